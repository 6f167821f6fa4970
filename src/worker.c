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
 * error, while the worker goes on with the other resources.
 *
 * The worker sleeps until the earliest of: a commit that needs it (its latch,
 * set by waitlist_wakes_at_xact_end()), the earliest deadline of the offers
 * and retries it owns, and waitlist.naptime.
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
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "waitlist.h"

PGDLLEXPORT void waitlist_worker_main(Datum main_arg);

/* resources looked at per round and kind of work; more waits for the next round */
#define ROUND_BATCH		100
#define EXPIRY_BATCH	1000
/* how soon to look again at a resource whose gate was busy */
#define BUSY_RETRY_MS	20

static int	worker_index;
static int	worker_count;

static WaitlistPlan due_event_resources_plan = {
	"SELECT DISTINCT resource_id FROM waitlist.capacity_event"
	" WHERE state = 'PENDING' AND next_attempt_at <= pg_catalog.now()"
	"   AND waitlist.resource_worker(resource_id, $2) = $1"
	" LIMIT $3",
	3, {INT4OID, INT4OID, INT4OID}
};

static WaitlistPlan failed_events_plan = {
	"UPDATE waitlist.capacity_event SET"
	"  attempts = attempts + 1,"
	"  last_error = $2,"
	"  next_attempt_at = pg_catalog.now() + LEAST("
	"      interval '100 milliseconds' * (2 ^ attempts) * (1 + pg_catalog.random() * 0.2),"
	"      interval '5 minutes'),"
	"  state = CASE WHEN attempts + 1 >= $3 THEN 'DEAD' ELSE 'PENDING' END"
	" WHERE resource_id = $1 AND state = 'PENDING' AND next_attempt_at <= pg_catalog.now()",
	3, {TEXTOID, TEXTOID, INT4OID}
};

/* milliseconds until the earliest offer deadline, event retry or next wave we own */
static WaitlistPlan next_deadline_plan = {
	"SELECT pg_catalog.ceil(pg_catalog.date_part('epoch', LEAST("
	"  (SELECT expires_at FROM waitlist.offer"
	"    WHERE state = 'OPEN' AND waitlist.resource_worker(resource_id, $2) = $1"
	"    ORDER BY expires_at LIMIT 1),"
	"  (SELECT pg_catalog.min(next_attempt_at) FROM waitlist.capacity_event"
	"    WHERE state = 'PENDING' AND waitlist.resource_worker(resource_id, $2) = $1),"
	"  (SELECT pg_catalog.min(wave_started_at + wave_interval) FROM waitlist.resource"
	"    WHERE free_units > 0 AND wave_size IS NOT NULL"
	"      AND waitlist.resource_worker(resource_id, $2) = $1)"
	") - pg_catalog.clock_timestamp()) * 1000)::bigint",
	2, {INT4OID, INT4OID}
};

typedef enum WorkKind
{
	WORK_EVENTS,				/* fold a resource's pending events and promote */
	WORK_IDLE_UNITS,			/* promote a resource's idle free units */
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
	List	   *resources;		/* out, WORK_LIST, in the round's context */
	int64		events;
	int64		offers;
	int64		expired;
	int64		wait_ms;
	MemoryContext round_cxt;
} Work;

static const char *
work_activity(WorkKind kind)
{
	switch (kind)
	{
		case WORK_EVENTS:
			return "waitlist: promoting released capacity";
		case WORK_IDLE_UNITS:
			return "waitlist: promoting idle free units";
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
	Datum		args[3] = {Int32GetDatum(worker_index), Int32GetDatum(worker_count),
	Int32GetDatum(ROUND_BATCH)};
	bool		isnull;
	uint64		i;

	switch (work->kind)
	{
		case WORK_EVENTS:
		case WORK_IDLE_UNITS:
			work->events = waitlist_fold_and_promote(work->resource_id, &work->offers, false);
			break;
		case WORK_EXPIRY:
			work->expired = waitlist_expire_due(EXPIRY_BATCH, worker_index, worker_count);
			break;
		case WORK_LIST:
			waitlist_execute(work->list_plan, args, NULL, true, 0, NULL);
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
				Datum		values[3] = {PointerGetDatum(work->resource_id),
					CStringGetTextDatum(work->error),
				Int32GetDatum(waitlist_max_event_attempts)};

				waitlist_execute(&failed_events_plan, values, NULL, false, 0, NULL);
			}
			break;
		case WORK_DEADLINE:
			waitlist_execute(&next_deadline_plan, args, NULL, true, 0, NULL);
			{
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

				work->wait_ms = isnull ? waitlist_naptime_ms : DatumGetInt64(d);
			}
			break;
	}
}

/*
 * Run one unit of work in a transaction of its own.  On error, log it, roll
 * back, and return the message (in the round's context); NULL on success.
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
	}
	PG_END_TRY();

	MemoryContextSwitchTo(work->round_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return error;
}

/* List resources to work on; NIL if the listing failed. */
static List *
list_resources(WaitlistPlan *plan, MemoryContext round_cxt)
{
	Work		work = {.kind = WORK_LIST,.list_plan = plan,.round_cxt = round_cxt};

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

	StartTransactionCommand();
	installed = OidIsValid(get_namespace_oid("waitlist", true));
	CommitTransactionCommand();
	return installed;
}

/*
 * One round over our share.  Returns how long to sleep: 0 if a batch was
 * full (more is waiting), else until the next deadline, at most the nap.
 */
static long
run_round(MemoryContext round_cxt, bool look_for_idle_units)
{
	ListCell   *lc;
	bool		more = false;
	bool		busy = false;
	char	   *error;
	int			n;
	long		wait_ms;

	if (!extension_installed())
	{
		MemoryContextSwitchTo(round_cxt);
		return waitlist_naptime_ms;
	}
	MemoryContextSwitchTo(round_cxt);

	n = 0;
	foreach(lc, list_resources(&due_event_resources_plan, round_cxt))
	{
		Work		work = {.kind = WORK_EVENTS,.resource_id = lfirst(lc),.round_cxt = round_cxt};

		error = run_work(&work);
		if (error != NULL)
		{
			Work		failure = {.kind = WORK_FAILURE,.resource_id = work.resource_id,
			.error = error,.round_cxt = round_cxt};

			(void) run_work(&failure);
			waitlist_worker_report(worker_index, 0, 0, 0, error);
		}
		else if (work.events < 0)
			busy = true;
		else
			waitlist_worker_report(worker_index, work.events, work.offers, 0, NULL);
		n++;
	}
	more |= n >= ROUND_BATCH && !busy;

	if (look_for_idle_units)
	{
		n = 0;
		foreach(lc, list_resources(&waitlist_idle_resources_plan, round_cxt))
		{
			Work		work = {.kind = WORK_IDLE_UNITS,.resource_id = lfirst(lc),.round_cxt = round_cxt};

			n++;
			error = run_work(&work);
			if (error == NULL && work.events < 0)
				busy = true;
			else
				waitlist_worker_report(worker_index, Max(work.events, 0), work.offers, 0, error);
		}
		more |= n >= ROUND_BATCH && !busy;
	}

	{
		Work		work = {.kind = WORK_EXPIRY,.round_cxt = round_cxt};

		error = run_work(&work);
		waitlist_worker_report(worker_index, 0, 0, work.expired, error);
		more |= work.expired >= EXPIRY_BATCH;
	}

	if (more)
		return 0;
	{
		Work		work = {.kind = WORK_DEADLINE,.wait_ms = waitlist_naptime_ms,.round_cxt = round_cxt};

		(void) run_work(&work);
		wait_ms = Max(0, Min(work.wait_ms, (int64) waitlist_naptime_ms));
	}
	/*
	 * A resource we passed over because its gate was held: look again soon.
	 * A deadline already past after this round is one we could not act on
	 * (an accept in flight holds the offer's resource): look again soon too,
	 * rather than spin.
	 */
	if (busy || wait_ms == 0)
		wait_ms = busy ? Min(wait_ms, BUSY_RETRY_MS) : BUSY_RETRY_MS;
	return wait_ms;
}

void
waitlist_worker_main(Datum main_arg)
{
	MemoryContext round_cxt;
	TimestampTz last_idle_scan = 0;
	long		wait_ms = 0;

	worker_index = DatumGetInt32(main_arg);
	worker_count = waitlist_running_worker_count();
	waitlist_am_worker = true;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(waitlist_database, NULL, 0);
	/* the gate protocol needs READ COMMITTED, whatever the server's default */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	waitlist_worker_attach(worker_index);

	round_cxt = AllocSetContextCreate(TopMemoryContext, "waitlist worker round",
									  ALLOCSET_DEFAULT_SIZES);
	elog(LOG, "waitlist worker %d of %d started for database \"%s\"",
		 worker_index, worker_count, waitlist_database);

	for (;;)
	{
		TimestampTz now;
		bool		idle_scan_due;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);

		/* idle free units are rare; look for them once a nap, not every wake-up */
		now = GetCurrentTimestamp();
		idle_scan_due = TimestampDifferenceExceeds(last_idle_scan, now, waitlist_naptime_ms);
		if (idle_scan_due)
			last_idle_scan = now;

		waitlist_worker_report(worker_index, 0, 0, 0, NULL);
		wait_ms = run_round(round_cxt, idle_scan_due);
	}
}
