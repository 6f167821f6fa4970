/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state of the promotion workers: one slot per worker with its
 *	  latch and counters, who owns which resource, and the wake-up that a
 *	  committing transaction sends to the worker owning what it changed.
 *
 * A transaction that gives capacity back (or joins a resource with free
 * units) in worker mode only notes which resources it changed; at commit,
 * after the transaction became visible, they go into the owning workers'
 * wake-up queues and the latches are set, so an aborted release wakes
 * nobody and a woken worker knows which resources to promote.  A queue that
 * fills up turns into an overflow flag, which makes its worker scan its
 * whole share instead: a wake-up is never lost, only made less precise.
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(waitlist_resource_worker);

/*
 * One resource a committed transaction changed.  Ids are bounded by
 * WAITLIST_MAX_ID_BYTES wherever they come from; a longer one (which cannot
 * be queued) overflows the queue instead.
 */
#define WAITLIST_WAKE_QUEUE_SIZE	64

typedef struct WaitlistWake
{
	uint32		hash;
	int			len;
	char		id[WAITLIST_MAX_ID_BYTES];
} WaitlistWake;

typedef struct WaitlistWorkerSlot
{
	Latch	   *latch;
	WaitlistWorkerStats stats;	/* what waitlist_worker_status() shows */
	/* resources to promote, filled at commit, drained by the worker */
	bool		wakes_overflowed;
	int			nwakes;
	WaitlistWake wakes[WAITLIST_WAKE_QUEUE_SIZE];
} WaitlistWorkerSlot;

typedef struct WaitlistShared
{
	LWLock	   *lock;
	int			nworkers;
	WaitlistWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} WaitlistShared;

static WaitlistShared *shared = NULL;

/*
 * Join rate limits: a token bucket per resource, in shared memory so that
 * no row is updated by every join.  A bucket is found by the resource's
 * hash; two resources whose hashes share a bucket take it from each other
 * (the newcomer starts full), so a limit is approximate under collisions,
 * and after a restart, when every bucket starts full.  A bucket knows its
 * resource's rate once a join has read it; a change of the setting makes it
 * read again once that change commits.
 */
#define WAITLIST_JOIN_BUCKETS	4096

typedef struct WaitlistJoinBucket
{
	slock_t		mutex;
	uint32		hash;			/* the resource it is for */
	bool		known;			/* rate and burst are the resource's */
	double		rate;			/* tokens per second; 0: no limit */
	double		burst;
	double		tokens;
	TimestampTz refilled_at;
} WaitlistJoinBucket;

static WaitlistJoinBucket *join_buckets = NULL;

/* resources whose join rate setting the current transaction changed */
#define WAITLIST_MAX_RATE_CHANGES	16
static uint32 rate_changes[WAITLIST_MAX_RATE_CHANGES];
static int	nrate_changes = 0;
static bool rate_changes_overflowed = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * What the current transaction will hand to the workers when it commits:
 * the resources it changed, and the workers whose whole share it changed
 * too much of to list (one bit each).
 */
static WaitlistWake pending_wakes[WAITLIST_WAKE_QUEUE_SIZE];
static int	npending_wakes = 0;
static uint64 overflow_at_commit = 0;

/* set in the workers themselves, which promote rather than defer */
bool		waitlist_am_worker = false;

static Size
shared_size(void)
{
	return add_size(offsetof(WaitlistShared, slots),
					mul_size(waitlist_worker_count, sizeof(WaitlistWorkerSlot)));
}

static void
waitlist_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
	RequestAddinShmemSpace(mul_size(WAITLIST_JOIN_BUCKETS, sizeof(WaitlistJoinBucket)));
	RequestNamedLWLockTranche("waitlist", 1);
}

static void
waitlist_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("waitlist", shared_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_size());
		shared->lock = &(GetNamedLWLockTranche("waitlist"))->lock;
		shared->nworkers = waitlist_worker_count;
	}
	join_buckets = ShmemInitStruct("waitlist join buckets",
								   mul_size(WAITLIST_JOIN_BUCKETS, sizeof(WaitlistJoinBucket)),
								   &found);
	if (!found)
	{
		int			i;

		memset(join_buckets, 0, mul_size(WAITLIST_JOIN_BUCKETS, sizeof(WaitlistJoinBucket)));
		for (i = 0; i < WAITLIST_JOIN_BUCKETS; i++)
			SpinLockInit(&join_buckets[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Chain the shared memory hooks; called from _PG_init when preloaded. */
void
waitlist_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = waitlist_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = waitlist_shmem_startup;
}

void
waitlist_require_shared(void)
{
	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("waitlist must be loaded via shared_preload_libraries"),
				 errhint("Add waitlist to shared_preload_libraries in postgresql.conf and restart the server to run the promotion workers.")));
}

/*
 * True when this database's waitlist work may be left to the workers: the
 * mode says so, the library was preloaded (so the workers exist) and they
 * serve this database.  Otherwise every caller promotes inline, so nothing
 * waits for a worker that is not there.
 */
bool
waitlist_defer_to_worker(void)
{
	static Oid	served_db = InvalidOid;
	static char *served_name = NULL;

	if (waitlist_am_worker || shared == NULL ||
		waitlist_promotion_mode != WAITLIST_PROMOTION_WORKER)
		return false;
	if (served_name != waitlist_database)
	{
		/* waitlist.database cannot change without a restart; look it up once */
		served_db = get_database_oid(waitlist_database, true);
		served_name = waitlist_database;
	}
	return served_db == MyDatabaseId;
}

/*
 * The one hash of a resource id: it picks the owning worker, keys the
 * resource's advisory locks and identifies queued wake-ups.
 */
uint32
waitlist_resource_hash(const text *resource_id)
{
	return DatumGetUInt32(hash_any((const unsigned char *) VARDATA_ANY(resource_id),
								   VARSIZE_ANY_EXHDR(resource_id)));
}

static int
owner_of_hash(uint32 hash, int nworkers)
{
	return nworkers > 0 ? (int) (hash % (uint32) nworkers) : 0;
}

/* The worker (0 .. nworkers-1) that owns a resource: a hash share. */
int
waitlist_resource_owner(const text *resource_id, int nworkers)
{
	return owner_of_hash(waitlist_resource_hash(resource_id), nworkers);
}

int
waitlist_running_worker_count(void)
{
	return shared ? shared->nworkers : 0;
}

/*
 * Add a resource to a wake-up queue of WAITLIST_WAKE_QUEUE_SIZE entries
 * unless it is there already.  False if the queue is full.
 */
static bool
queue_wake(WaitlistWake *queue, int *nqueued, uint32 hash, const char *id, int len)
{
	int			i;

	for (i = 0; i < *nqueued; i++)
		if (queue[i].hash == hash && queue[i].len == len &&
			memcmp(queue[i].id, id, len) == 0)
			return true;
	if (*nqueued >= WAITLIST_WAKE_QUEUE_SIZE)
		return false;
	queue[*nqueued].hash = hash;
	queue[*nqueued].len = len;
	memcpy(queue[*nqueued].id, id, len);
	(*nqueued)++;
	return true;
}

/*
 * Have the resource's owner promote it once the current transaction
 * commits.  Subtransactions are not tracked: a wake-up left over from an
 * aborted one only makes the worker look at a resource with nothing to do.
 */
void
waitlist_wake_owner_at_commit(const text *resource_id)
{
	uint32		hash;
	int			len = VARSIZE_ANY_EXHDR(resource_id);

	if (shared == NULL || shared->nworkers == 0)
		return;
	hash = waitlist_resource_hash(resource_id);
	if (len > WAITLIST_MAX_ID_BYTES ||
		!queue_wake(pending_wakes, &npending_wakes, hash, VARDATA_ANY(resource_id), len))
		overflow_at_commit |= UINT64CONST(1) << owner_of_hash(hash, shared->nworkers);
}

/*
 * Transaction end.  On commit, queue the noted resources for their owners
 * and set the owners' latches; on abort or PREPARE, forget them: a prepared
 * transaction's work becomes visible only at COMMIT PREPARED, perhaps in
 * another session, and is found there by the workers' scans.
 */
void
waitlist_wakes_at_xact_end(bool commit)
{
	uint64		wake = overflow_at_commit;
	int			i;

	if (npending_wakes == 0 && overflow_at_commit == 0)
		return;
	if (commit && shared != NULL)
	{
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < npending_wakes; i++)
		{
			WaitlistWake *w = &pending_wakes[i];
			int			owner = owner_of_hash(w->hash, shared->nworkers);
			WaitlistWorkerSlot *slot = &shared->slots[owner];

			if (!queue_wake(slot->wakes, &slot->nwakes, w->hash, w->id, w->len))
				slot->wakes_overflowed = true;
			wake |= UINT64CONST(1) << owner;
		}
		for (i = 0; i < shared->nworkers; i++)
		{
			if ((overflow_at_commit & (UINT64CONST(1) << i)) != 0)
				shared->slots[i].wakes_overflowed = true;
			if ((wake & (UINT64CONST(1) << i)) && shared->slots[i].latch != NULL)
				SetLatch(shared->slots[i].latch);
		}
		LWLockRelease(shared->lock);
	}
	npending_wakes = 0;
	overflow_at_commit = 0;
}

/*
 * The worker takes its queued wake-ups: the resources (as text, allocated
 * in the current memory context), and whether the queue overflowed, in
 * which case the worker must look at its whole share.
 */
List *
waitlist_worker_take_wakes(int index, bool *overflowed)
{
	WaitlistWorkerSlot *slot = &shared->slots[index];
	WaitlistWake queue[WAITLIST_WAKE_QUEUE_SIZE];
	int			n;
	int			i;
	List	   *resources = NIL;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	n = slot->nwakes;
	memcpy(queue, slot->wakes, n * sizeof(WaitlistWake));
	*overflowed = slot->wakes_overflowed;
	slot->nwakes = 0;
	slot->wakes_overflowed = false;
	LWLockRelease(shared->lock);

	for (i = 0; i < n; i++)
		resources = lappend(resources, cstring_to_text_with_len(queue[i].id, queue[i].len));
	return resources;
}

static void
worker_detach(int code, Datum arg)
{
	WaitlistWorkerSlot *slot = &shared->slots[DatumGetInt32(arg)];

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot->stats.pid = 0;
	slot->latch = NULL;
	LWLockRelease(shared->lock);
}

/* A worker takes its slot; the counters survive a restart of the worker. */
void
waitlist_worker_attach(int index)
{
	waitlist_require_shared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->slots[index].stats.pid = MyProcPid;
	shared->slots[index].latch = MyLatch;
	LWLockRelease(shared->lock);
	before_shmem_exit(worker_detach, Int32GetDatum(index));
}

/* A worker starts a round. */
void
waitlist_worker_round(int index)
{
	WaitlistWorkerSlot *slot = &shared->slots[index];

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot->stats.last_wake = GetCurrentTimestamp();
	slot->stats.rounds++;
	LWLockRelease(shared->lock);
}

void
waitlist_worker_report(int index, int64 events, int64 offers, int64 expired,
					   const char *error)
{
	WaitlistWorkerStats *stats = &shared->slots[index].stats;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	stats->last_wake = GetCurrentTimestamp();
	stats->events_processed += events;
	stats->offers_made += offers;
	stats->offers_expired += expired;
	if (error != NULL)
	{
		/* cut on a character boundary: the status view must stay valid text */
		int			len = pg_mbcliplen(error, strlen(error), sizeof(stats->last_error) - 1);

		memcpy(stats->last_error, error, len);
		stats->last_error[len] = '\0';
		stats->last_error_at = stats->last_wake;
	}
	LWLockRelease(shared->lock);
}

/*
 * waitlist_resource_worker(resource_id text) RETURNS integer
 *
 * The worker that owns a resource, for SQL that must pick one worker's
 * share (the same hash as waitlist_wake_owner_at_commit()).
 */
Datum
waitlist_resource_worker(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(waitlist_resource_owner(PG_GETARG_TEXT_PP(0),
											PG_GETARG_INT32(1)));
}

/*
 * A copy of worker index's counters (index < the running count), taken
 * under the lock so that they belong together.
 */
void
waitlist_worker_stats(int index, WaitlistWorkerStats *stats)
{
	waitlist_require_shared();
	Assert(index >= 0 && index < shared->nworkers);
	LWLockAcquire(shared->lock, LW_SHARED);
	*stats = shared->slots[index].stats;
	LWLockRelease(shared->lock);
}

/* --- join rate limits ---------------------------------------------------- */

/* Whether join rate limits can be kept: the library was preloaded. */
bool
waitlist_join_limits_available(void)
{
	return join_buckets != NULL;
}

/*
 * Take a join token from the bucket of a resource (by hash).  Returns
 * WAITLIST_JOIN_UNKNOWN if the bucket does not know the resource's rate
 * (the caller reads it and calls waitlist_learn_join_rate()),
 * WAITLIST_JOIN_ADMITTED if a token was taken or there is no limit, and
 * WAITLIST_JOIN_REFUSED with *retry_ms, the wait for the next token.
 */
WaitlistJoinAdmission
waitlist_take_join_token(uint32 hash, int64 *retry_ms)
{
	WaitlistJoinBucket *b;
	WaitlistJoinAdmission admission;
	TimestampTz now;

	if (join_buckets == NULL)
		return WAITLIST_JOIN_ADMITTED;
	b = &join_buckets[hash % WAITLIST_JOIN_BUCKETS];
	now = GetCurrentTimestamp();
	SpinLockAcquire(&b->mutex);
	if (!b->known || b->hash != hash)
		admission = WAITLIST_JOIN_UNKNOWN;
	else if (b->rate <= 0)
		admission = WAITLIST_JOIN_ADMITTED;
	else
	{
		double		elapsed = Max(0, (double) (now - b->refilled_at)) / USECS_PER_SEC;

		b->tokens = Min(b->burst, b->tokens + elapsed * b->rate);
		b->refilled_at = now;
		if (b->tokens >= 1.0)
		{
			b->tokens -= 1.0;
			admission = WAITLIST_JOIN_ADMITTED;
		}
		else
		{
			*retry_ms = (int64) ceil((1.0 - b->tokens) / b->rate * 1000.0);
			admission = WAITLIST_JOIN_REFUSED;
		}
	}
	SpinLockRelease(&b->mutex);
	return admission;
}

/* A join that took a token found its fan's entry already: give it back. */
void
waitlist_return_join_token(uint32 hash)
{
	WaitlistJoinBucket *b;

	if (join_buckets == NULL)
		return;
	b = &join_buckets[hash % WAITLIST_JOIN_BUCKETS];
	SpinLockAcquire(&b->mutex);
	if (b->known && b->hash == hash && b->rate > 0)
		b->tokens = Min(b->burst, b->tokens + 1.0);
	SpinLockRelease(&b->mutex);
}

/*
 * The rate a resource's joins are held to (rate 0: none), as a join read
 * it.  A bucket taken over from another resource, or learning a new rate,
 * starts full.
 */
void
waitlist_learn_join_rate(uint32 hash, double rate, int32 burst)
{
	WaitlistJoinBucket *b;

	if (join_buckets == NULL)
		return;
	b = &join_buckets[hash % WAITLIST_JOIN_BUCKETS];
	SpinLockAcquire(&b->mutex);
	if (!b->known || b->hash != hash || b->rate != rate || b->burst != burst)
	{
		b->hash = hash;
		b->rate = rate;
		b->burst = burst;
		b->tokens = burst;
		b->refilled_at = GetCurrentTimestamp();
	}
	b->known = true;
	SpinLockRelease(&b->mutex);
}

/* The transaction changed a resource's join rate: forget it at commit. */
void
waitlist_forget_join_rate_at_commit(uint32 hash)
{
	if (nrate_changes < WAITLIST_MAX_RATE_CHANGES)
		rate_changes[nrate_changes++] = hash;
	else
		rate_changes_overflowed = true;
}

static void
forget_join_rate(uint32 hash)
{
	WaitlistJoinBucket *b = &join_buckets[hash % WAITLIST_JOIN_BUCKETS];

	SpinLockAcquire(&b->mutex);
	if (b->hash == hash)
		b->known = false;
	SpinLockRelease(&b->mutex);
}

/*
 * Transaction end: on commit, the buckets of the resources whose rate
 * changed read it again at their next join (all of them if there were too
 * many to list).
 */
void
waitlist_join_rates_at_xact_end(bool commit)
{
	int			i;

	if (commit && join_buckets != NULL)
	{
		if (rate_changes_overflowed)
		{
			for (i = 0; i < WAITLIST_JOIN_BUCKETS; i++)
			{
				SpinLockAcquire(&join_buckets[i].mutex);
				join_buckets[i].known = false;
				SpinLockRelease(&join_buckets[i].mutex);
			}
		}
		else
			for (i = 0; i < nrate_changes; i++)
				forget_join_rate(rate_changes[i]);
	}
	nrate_changes = 0;
	rate_changes_overflowed = false;
}
