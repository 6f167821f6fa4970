/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The promotion workers: each owns a hash share of the resources and, in
 *	  rounds, folds their pending capacity events into offers, promotes free
 *	  units nobody took, and expires offers at their deadlines.
 *
 * A round's units of work are one transaction each (one resource's events,
 * one batch of expiries), so a worker killed at any point loses nothing: the
 * work it had not committed is still pending and the restarted worker (or
 * the next round) does it.  A resource whose promotion keeps failing has its
 * events retried with exponential backoff and then marked DEAD with the last
 * error, while the worker goes on with the other resources.  Failures that
 * say nothing about the event (a cancel, a lock or statement timeout, a
 * deadlock, a serialization failure, a lack of resources) count no attempt.
 *
 * A commit that needs the worker queues the resources it changed and sets
 * the worker's latch (waitlist_wakes_at_xact_end()); the worker promotes
 * exactly those.  Otherwise it sleeps until the earliest deadline of the
 * offers, retries and waves it owns, or waitlist.naptime.  A resource whose
 * gate is held (a slow booking function, an idle or prepared transaction)
 * or that failed transiently is retried after a delay that doubles up to
 * waitlist.naptime, and left out of the deadlines meanwhile: the worker
 * neither spins on it nor lets it hold back the rest of its share.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "engine.h"

PGDLLEXPORT void waitlist_worker_main(Datum main_arg);

PG_FUNCTION_INFO_V1(waitlist_worker_status);

/* resources looked at per round and kind of work; more waits for the next round */
#define ROUND_BATCH		100
#define EXPIRY_BATCH	1000
/* first retry of a resource whose gate was busy; doubles up to the nap */
#define BUSY_RETRY_MS	20

static int	worker_index;
static int	worker_count;

/*
 * Resources the worker leaves alone for a while: their gate was held, or
 * their work failed transiently.
 */
typedef struct BackoffEntry
{
	char		resource_id[WAITLIST_MAX_ID_BYTES + 1]; /* hash key */
	TimestampTz retry_at;
	int			delay_ms;
	bool		stuck_this_round;
	bool		tried_this_round;
} BackoffEntry;

static HTAB *backoff = NULL;

static WaitlistPlan due_event_resources_plan = {
	"SELECT DISTINCT resource_id FROM waitlist.capacity_event"
	" WHERE state OPERATOR(pg_catalog.=) 'PENDING'"
	"   AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
	"   AND waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1"
	"   AND resource_id OPERATOR(pg_catalog.<>) ALL ($4)"
	" LIMIT $3",
	4, {INT4OID, INT4OID, INT4OID, TEXTARRAYOID}, 0, true
};

/*
 * A failed attempt at a resource's due events: the retry policy
 * (WAITLIST_BACKOFF_SQL) from waitlist.event_retry_base ($4 ms), at most
 * 10 minutes apart; DEAD after waitlist.max_event_attempts ($3).  With the
 * defaults (1 s, 15 attempts) an event is given up after about an hour.
 */
static WaitlistPlan failed_events_plan = {
	"UPDATE waitlist.capacity_event SET"
	"  attempts = attempts OPERATOR(pg_catalog.+) 1,"
	"  last_error = $2,"
	"  state = CASE WHEN (attempts OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>=) $3"
	"               THEN 'DEAD' ELSE 'PENDING' END,"
	"  next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
	WAITLIST_BACKOFF_SQL("$4", "10 minutes", "0.1", "event_id")
	" WHERE resource_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'PENDING'"
	"   AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()",
	4, {TEXTOID, TEXTOID, INT4OID, INT4OID}
};

/*
 * Milliseconds until the earliest offer deadline or event retry we own, and
 * until the earliest wave that may go on (a spent wave of a resource with
 * free units and people waiting); the resources in $3 are left out.
 */
static WaitlistPlan next_deadline_plan = {
	"SELECT pg_catalog.ceil(pg_catalog.date_part('epoch', LEAST("
	"  (SELECT expires_at FROM waitlist.offer"
	"    WHERE state OPERATOR(pg_catalog.=) 'OPEN'"
	"      AND waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1"
	"      AND resource_id OPERATOR(pg_catalog.<>) ALL ($3)"
	"    ORDER BY expires_at LIMIT 1),"
	"  (SELECT pg_catalog.min(next_attempt_at) FROM waitlist.capacity_event"
	"    WHERE state OPERATOR(pg_catalog.=) 'PENDING'"
	"      AND waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1"
	"      AND resource_id OPERATOR(pg_catalog.<>) ALL ($3))"
	") OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::bigint,"
	" pg_catalog.ceil(pg_catalog.date_part('epoch',"
	"  (SELECT pg_catalog.min(" WAITLIST_WAVE_END_SQL ") FROM waitlist.resource r"
	"    WHERE r.free_units OPERATOR(pg_catalog.>) 0 AND r.wave_size IS NOT NULL"
	"      AND r.wave_offers OPERATOR(pg_catalog.>=) r.wave_size"
	"      AND waitlist.resource_worker(r.resource_id, $2) OPERATOR(pg_catalog.=) $1"
	"      AND r.resource_id OPERATOR(pg_catalog.<>) ALL ($3)"
	"      AND EXISTS (SELECT 1 FROM waitlist.entry e"
	"                  WHERE e.resource_id OPERATOR(pg_catalog.=) r.resource_id"
	"                    AND e.state OPERATOR(pg_catalog.=) 'WAITING'))"
	"  OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::bigint",
	3, {INT4OID, INT4OID, TEXTARRAYOID}, 0, true
};

/*
 * Resources with work due that this round left undone (their gate was held
 * when the expiry came by): they wait in the backoff instead of making the
 * next deadline "now".
 */
static WaitlistPlan undone_resources_plan = {
	"SELECT resource_id FROM waitlist.offer"
	" WHERE state OPERATOR(pg_catalog.=) 'OPEN'"
	"   AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()"
	"   AND waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1"
	"   AND resource_id OPERATOR(pg_catalog.<>) ALL ($3)"
	" UNION "
	"SELECT resource_id FROM waitlist.capacity_event"
	" WHERE state OPERATOR(pg_catalog.=) 'PENDING'"
	"   AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()"
	"   AND waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1"
	"   AND resource_id OPERATOR(pg_catalog.<>) ALL ($3)"
	" LIMIT 1000",
	3, {INT4OID, INT4OID, TEXTARRAYOID}, 0, true
};

typedef enum WorkKind
{
	WORK_EVENTS,				/* fold a resource's due events and promote */
	WORK_EXPIRY,				/* expire due offers of our share */
	WORK_LIST,					/* list resources for one of the above */
	WORK_DEADLINE,				/* when to wake next */
	WORK_FAILURE				/* count a failed attempt at a resource's events */
} WorkKind;

typedef struct Work
{
	WorkKind	kind;
	text	   *resource_id;
	const char *error;			/* in, WORK_FAILURE */
	WaitlistPlan *list_plan;
	Datum		skipped;		/* in, WORK_LIST and WORK_DEADLINE: text[] to leave out */
	List	   *resources;		/* out, WORK_LIST, in the round's context */
	int64		events;
	int64		offers;
	int64		expired;
	int64		wait_ms;		/* out, WORK_DEADLINE: offers and events */
	int64		wave_wait_ms;	/* out, WORK_DEADLINE: waves; -1 if none */
	int			sqlerrcode;		/* out: of the error, if any */
	MemoryContext round_cxt;
} Work;

static const char *
work_activity(WorkKind kind)
{
	switch (kind)
	{
		case WORK_EVENTS:
			return "waitlist: promoting released capacity";
		case WORK_EXPIRY:
			return "waitlist: expiring offers";
		case WORK_LIST:
			return "waitlist: looking for work";
		case WORK_DEADLINE:
			return "waitlist: computing next deadline";
		case WORK_FAILURE:
			return "waitlist: recording a failed promotion";
	}
	return "waitlist";
}

static void
do_work(Work *work)
{
	Datum		args[4] = {Int32GetDatum(worker_index), Int32GetDatum(worker_count),
	Int32GetDatum(ROUND_BATCH), work->skipped};
	bool		isnull;
	uint64		i;

	switch (work->kind)
	{
		case WORK_EVENTS:
			work->events = waitlist_fold_and_promote(work->resource_id, &work->offers, false);
			break;
		case WORK_EXPIRY:
			work->expired = waitlist_expire_due(EXPIRY_BATCH, worker_index, worker_count);
			/* and the accept sagas past their deadline, on the same rounds */
			work->expired += waitlist_end_due_sagas(EXPIRY_BATCH, worker_index, worker_count);
			/* and the places left unconfirmed, and the lines past their cutoff */
			(void) waitlist_end_due_places(EXPIRY_BATCH, worker_index, worker_count);
			(void) waitlist_close_due(ROUND_BATCH, worker_index, worker_count);
			break;
		case WORK_LIST:
			/* the plans listing work all take (owner, nworkers, limit[, skipped]) */
			if (work->list_plan == &undone_resources_plan)
				args[2] = work->skipped;
			waitlist_execute(work->list_plan, args, NULL, true, 0);
			for (i = 0; i < SPI_processed; i++)
			{
				Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
				MemoryContext old = MemoryContextSwitchTo(work->round_cxt);

				work->resources = lappend(work->resources, DatumGetTextPCopy(d));
				MemoryContextSwitchTo(old);
			}
			break;
		case WORK_FAILURE:
			{
				Datum		values[4] = {PointerGetDatum(work->resource_id),
					CStringGetTextDatum(work->error),
					Int32GetDatum(waitlist_max_event_attempts),
				Int32GetDatum(waitlist_event_retry_base_ms)};

				waitlist_execute(&failed_events_plan, values, NULL, false, 0);
			}
			break;
		case WORK_DEADLINE:
			args[2] = work->skipped;
			waitlist_execute(&next_deadline_plan, args, NULL, true, 0);
			{
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

				work->wait_ms = isnull ? waitlist_naptime_ms : DatumGetInt64(d);
				d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
				work->wave_wait_ms = isnull ? -1 : Max(DatumGetInt64(d), 0);
			}
			break;
	}
}

/* how long statistics not yet reported may wait (0: none are pending) */
static long stats_wait_ms = 0;

/*
 * Run one unit of work in a transaction of its own.  On error, log it, roll
 * back, and return the message (in the round's context, with its SQLSTATE
 * in work->sqlerrcode); NULL on success.  The transaction's statistics are
 * reported as in any backend, so autovacuum sees the workers' churn.
 */
static char *
run_work(Work *work)
{
	char	   *volatile error = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, work_activity(work->kind));

	PG_TRY();
	{
		WaitlistApiCall call;

		waitlist_api_begin(&call);
		do_work(work);
		waitlist_api_end(&call);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(work->round_cxt);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		error = edata->message;
		work->sqlerrcode = edata->sqlerrcode;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(work->round_cxt);
	stats_wait_ms = pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return error;
}

/*
 * Errors that say nothing about the work itself: the same work may well
 * succeed on the next try.  A cancel (pg_cancel_backend(), a statement
 * timeout) is one of them.
 */
static bool
error_is_transient(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_LOCK_NOT_AVAILABLE:
			return true;
	}
	return ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_TRANSACTION_ROLLBACK ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES;
}

/* --- the backoff of busy resources ------------------------------------- */

static BackoffEntry *
backoff_find(text *resource_id, HASHACTION action, bool *found)
{
	char		key[WAITLIST_MAX_ID_BYTES + 1] = {0};
	int			len = VARSIZE_ANY_EXHDR(resource_id);

	/* ids are bounded where they come in; a longer one is just retried */
	if (len > WAITLIST_MAX_ID_BYTES)
		return NULL;
	memcpy(key, VARDATA_ANY(resource_id), len);
	return hash_search(backoff, key, action, found);
}

/* The resource's work could not be done: note it for the end of the round. */
static void
backoff_note(text *resource_id)
{
	bool		found;
	BackoffEntry *entry = backoff_find(resource_id, HASH_ENTER, &found);

	if (entry == NULL)
		return;
	if (!found)
	{
		entry->retry_at = 0;
		entry->delay_ms = BUSY_RETRY_MS / 2;
		entry->tried_this_round = false;
	}
	entry->stuck_this_round = true;
}

/* The resource's work was tried this round (whatever came of it). */
static void
backoff_tried(text *resource_id)
{
	BackoffEntry *entry = backoff_find(resource_id, HASH_FIND, NULL);

	if (entry != NULL)
		entry->tried_this_round = true;
}

/* Whether a resource waits in the backoff (not yet to be retried). */
static bool
backoff_waiting(text *resource_id, TimestampTz now)
{
	BackoffEntry *entry = backoff_find(resource_id, HASH_FIND, NULL);

	return entry != NULL && entry->retry_at > now;
}

/*
 * End of a round: resources that were stuck again double their delay (up to
 * the nap); those tried without being stuck are done with.  One whose retry
 * came during the round but was not tried in it (the round began early, for
 * another resource's commit) stays, due: leaving it out here would leave its
 * free units idle until the next idle scan.  Returns the milliseconds to
 * the earliest retry, -1 if none.
 */
static int64
backoff_settle(TimestampTz now)
{
	HASH_SEQ_STATUS seq;
	BackoffEntry *entry;
	TimestampTz earliest = 0;

	hash_seq_init(&seq, backoff);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (entry->stuck_this_round)
		{
			entry->delay_ms = Min(entry->delay_ms * 2, waitlist_naptime_ms);
			entry->retry_at = TimestampTzPlusMilliseconds(now, entry->delay_ms);
			entry->stuck_this_round = false;
			entry->tried_this_round = false;
		}
		else if (entry->tried_this_round)
		{
			(void) hash_search(backoff, entry->resource_id, HASH_REMOVE, NULL);
			continue;
		}
		if (earliest == 0 || entry->retry_at < earliest)
			earliest = entry->retry_at;
	}
	if (earliest == 0)
		return -1;
	return Max(0, (earliest - now + 999) / 1000);
}

/*
 * The resources waiting in the backoff, as a text[] in the current context;
 * built outside any transaction, so without catalog lookups.
 */
static Datum
backoff_array(TimestampTz now)
{
	HASH_SEQ_STATUS seq;
	BackoffEntry *entry;
	Datum	   *elems = palloc(Max(hash_get_num_entries(backoff), 1) * sizeof(Datum));
	int			n = 0;

	hash_seq_init(&seq, backoff);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (entry->retry_at > now || entry->stuck_this_round)
			elems[n++] = CStringGetTextDatum(entry->resource_id);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * The resources whose retry has come, as a list of text in the current
 * context.  A resource goes into the backoff because its work could not be
 * done, not because a query will find it again: free units beside waiters
 * (a commit woke us while its transaction still held the gate) have no
 * event or deadline that would bring it back before the idle scan.
 */
static List *
backoff_due(TimestampTz now)
{
	HASH_SEQ_STATUS seq;
	BackoffEntry *entry;
	List	   *due = NIL;

	hash_seq_init(&seq, backoff);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (entry->retry_at != 0 && entry->retry_at <= now)
			due = lappend(due, cstring_to_text(entry->resource_id));
	return due;
}

/* List resources to work on; NIL if the listing failed. */
static List *
list_resources(WaitlistPlan *plan, Datum skipped, MemoryContext round_cxt)
{
	Work		work = {.kind = WORK_LIST,.list_plan = plan,.skipped = skipped,.round_cxt = round_cxt};

	if (run_work(&work) != NULL)
		return NIL;
	return work.resources;
}

/*
 * Whether the extension exists in our database yet (or still): until then
 * the worker idles quietly instead of logging errors every nap.
 */
static bool
extension_installed(void)
{
	bool		installed;

	/* outside run_work()'s error handling, a cancel would end the worker */
	HOLD_CANCEL_INTERRUPTS();
	StartTransactionCommand();
	installed = OidIsValid(get_namespace_oid("waitlist", true));
	CommitTransactionCommand();
	RESUME_CANCEL_INTERRUPTS();
	return installed;
}

/*
 * Fold a resource's due events and promote its free units, once a round.
 * A failure that is the event's own counts an attempt at its due events; a
 * transient one, like a gate held by someone else, puts the resource in the
 * backoff instead.  Returns true if it made progress.
 */
static bool
promote_resource(text *resource_id, List **tried, MemoryContext round_cxt)
{
	Work		work = {.kind = WORK_EVENTS,.resource_id = resource_id,.round_cxt = round_cxt};
	char	   *error;
	ListCell   *lc;

	foreach(lc, *tried)
		if (VARSIZE_ANY_EXHDR(lfirst(lc)) == VARSIZE_ANY_EXHDR(resource_id) &&
			memcmp(VARDATA_ANY(lfirst(lc)), VARDATA_ANY(resource_id),
				   VARSIZE_ANY_EXHDR(resource_id)) == 0)
			return false;
	*tried = lappend(*tried, resource_id);
	backoff_tried(resource_id);

	error = run_work(&work);
	if (error == NULL && work.events >= 0)
	{
		waitlist_worker_report(worker_index, work.events, work.offers, 0, NULL);
		return work.events > 0 || work.offers > 0;
	}
	if (error == NULL || error_is_transient(work.sqlerrcode))
		backoff_note(resource_id);
	else
	{
		Work		failure = {.kind = WORK_FAILURE,.resource_id = resource_id,
		.error = error,.round_cxt = round_cxt};

		(void) run_work(&failure);
	}
	if (error != NULL)
		waitlist_worker_report(worker_index, 0, 0, 0, error);
	return false;
}

/*
 * One round over our share: the resources commits woke us for, due events,
 * idle units (when due), expiries.  Returns how long to sleep: 0 if a batch
 * was full (more is waiting), else until the next deadline or retry, at
 * most the nap; *wave_wait_ms gets the time to the next wave (-1: none).
 */
static long
run_round(MemoryContext round_cxt, List *woken, bool look_for_idle_units,
		  int64 *wave_wait_ms)
{
	ListCell   *lc;
	bool		more = false;
	bool		progress;
	char	   *error;
	int			n;
	long		wait_ms;
	int64		retry_ms;
	TimestampTz now = GetCurrentTimestamp();
	List	   *tried = NIL;

	*wave_wait_ms = -1;
	if (!extension_installed())
	{
		MemoryContextSwitchTo(round_cxt);
		return waitlist_naptime_ms;
	}
	MemoryContextSwitchTo(round_cxt);

	/* what commits asked for, even if in the backoff: a commit is news */
	foreach(lc, woken)
		(void) promote_resource(lfirst(lc), &tried, round_cxt);

	/* what could not be done before and whose retry has come */
	foreach(lc, backoff_due(now))
		(void) promote_resource(lfirst(lc), &tried, round_cxt);

	n = 0;
	progress = false;
	foreach(lc, list_resources(&due_event_resources_plan, backoff_array(now), round_cxt))
	{
		progress |= promote_resource(lfirst(lc), &tried, round_cxt);
		n++;
	}
	more |= n >= ROUND_BATCH && progress;

	if (look_for_idle_units)
	{
		n = 0;
		progress = false;
		foreach(lc, list_resources(&waitlist_idle_resources_plan, (Datum) 0, round_cxt))
		{
			n++;
			if (!backoff_waiting(lfirst(lc), now))
				progress |= promote_resource(lfirst(lc), &tried, round_cxt);
		}
		more |= n >= ROUND_BATCH && progress;
	}

	{
		Work		work = {.kind = WORK_EXPIRY,.round_cxt = round_cxt};

		error = run_work(&work);
		waitlist_worker_report(worker_index, 0, 0, work.expired, error);
		more |= work.expired >= EXPIRY_BATCH;
	}

	if (more)
		return 0;

	/*
	 * What is due now and still undone was passed over (a held gate, an
	 * error): it waits in the backoff, and the deadline is that of the rest.
	 */
	now = GetCurrentTimestamp();
	{
		Work		work = {.kind = WORK_DEADLINE,.wait_ms = waitlist_naptime_ms,
		.skipped = backoff_array(now),.round_cxt = round_cxt};

		if (run_work(&work) == NULL && work.wait_ms <= 0)
		{
			foreach(lc, list_resources(&undone_resources_plan, work.skipped, round_cxt))
				backoff_note(lfirst(lc));
			work.skipped = backoff_array(now);
			(void) run_work(&work);
		}
		wait_ms = Max(0, Min(work.wait_ms, (int64) waitlist_naptime_ms));
		*wave_wait_ms = work.wave_wait_ms;
	}
	retry_ms = backoff_settle(GetCurrentTimestamp());
	if (retry_ms >= 0)
		wait_ms = Min(wait_ms, retry_ms);
	/* something due that is in no backoff yet cannot be acted on either */
	if (wait_ms == 0)
		wait_ms = BUSY_RETRY_MS;
	return wait_ms;
}

/*
 * The worker applies the defaults of its database and role when it
 * connects, like any session, and a database owner (who need not be a
 * superuser) can set them with ALTER DATABASE ... SET.  These decide whether
 * the worker's rounds run at all, for every resource: a read-only default
 * would fail every round, a timeout would cancel the long ones, and the
 * gate protocol needs READ COMMITTED.  So the worker overrides them for its
 * whole life; the API frame pins the settings that change what its SQL
 * computes.
 */
static void
override_session_defaults(void)
{
	static const struct
	{
		const char *name;
		const char *value;
	}			overrides[] = {
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
	};

	for (size_t i = 0; i < lengthof(overrides); i++)
		SetConfigOption(overrides[i].name, overrides[i].value,
						PGC_SUSET, PGC_S_OVERRIDE);
}

void
waitlist_worker_main(Datum main_arg)
{
	MemoryContext round_cxt;
	TimestampTz last_idle_scan = 0;
	TimestampTz next_wave = 0;
	TimestampTz next_round = 0;
	long		wait_ms;
	HASHCTL		ctl;

	worker_index = DatumGetInt32(main_arg);
	worker_count = waitlist_running_worker_count();
	waitlist_am_worker = true;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(waitlist_database, NULL, 0);
	override_session_defaults();
	waitlist_worker_attach(worker_index);

	round_cxt = AllocSetContextCreate(TopMemoryContext, "waitlist worker round",
									  ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = WAITLIST_MAX_ID_BYTES + 1;
	ctl.entrysize = sizeof(BackoffEntry);
	backoff = hash_create("waitlist worker backoff", 64, &ctl, HASH_ELEM | HASH_STRINGS);
	elog(LOG, "waitlist worker %d of %d started for database \"%s\"",
		 worker_index, worker_count, waitlist_database);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		bool		idle_scan_due;
		bool		overflowed;
		List	   *woken;
		int64		wave_wait_ms;
		long		sleep_ms;
		int			rc;

		sleep_ms = next_round > now ? (long) ((next_round - now + 999) / 1000) : 0;
		/* pending statistics wait no longer than they would in a backend */
		if (stats_wait_ms > 0)
			sleep_ms = Min(sleep_ms, stats_wait_ms);
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* a cancel between units of work has nothing to cancel */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (stats_wait_ms > 0)
			stats_wait_ms = pgstat_report_stat(true);
		/* woken only to report statistics: the round is not due yet */
		if (!(rc & WL_LATCH_SET) && GetCurrentTimestamp() < next_round)
			continue;

		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		woken = waitlist_worker_take_wakes(worker_index, &overflowed);

		/*
		 * Idle free units are rare: look for them once a nap, when a wave may
		 * go on, or when more commits woke us than the queue could name.
		 */
		now = GetCurrentTimestamp();
		idle_scan_due = overflowed || (next_wave != 0 && next_wave <= now) ||
			TimestampDifferenceExceeds(last_idle_scan, now, waitlist_naptime_ms);
		if (idle_scan_due)
			last_idle_scan = now;

		waitlist_worker_round(worker_index);
		wait_ms = run_round(round_cxt, woken, idle_scan_due, &wave_wait_ms);
		now = GetCurrentTimestamp();
		next_wave = wave_wait_ms < 0 ? 0 : TimestampTzPlusMilliseconds(now, wave_wait_ms);
		if (wave_wait_ms >= 0)
			wait_ms = Min(wait_ms, Max(wave_wait_ms, BUSY_RETRY_MS));
		next_round = TimestampTzPlusMilliseconds(now, wait_ms);
	}
}

/*
 * waitlist_worker_status() RETURNS SETOF record: per worker its pid (NULL
 * while not running), the number of resources it owns, when it last woke,
 * and its counters since the server started.  Schema 1.1 added the rounds
 * column; a 1.0 database asks for the first nine only.
 */
Datum
waitlist_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	int			nworkers;

	waitlist_require_shared();
	nworkers = waitlist_running_worker_count();
	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < nworkers; i++)
	{
		WaitlistWorkerStats slot;
		Datum		values[10];
		bool		nulls[10] = {0};

		waitlist_worker_stats(i, &slot);

		values[0] = Int32GetDatum(i);
		values[1] = Int32GetDatum(slot.pid);
		nulls[1] = slot.pid == 0;
		values[2] = Int64GetDatum(waitlist_count_owned_resources(i, nworkers));
		values[3] = TimestampTzGetDatum(slot.last_wake);
		nulls[3] = slot.last_wake == 0;
		values[4] = Int64GetDatum(slot.events_processed);
		values[5] = Int64GetDatum(slot.offers_made);
		values[6] = Int64GetDatum(slot.offers_expired);
		values[7] = CStringGetTextDatum(slot.last_error);
		nulls[7] = slot.last_error[0] == '\0';
		values[8] = TimestampTzGetDatum(slot.last_error_at);
		nulls[8] = slot.last_error_at == 0;
		values[9] = Int64GetDatum(slot.rounds);
		Assert(rsinfo->setDesc->natts <= lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
