/*-------------------------------------------------------------------------
 *
 * waitlist.c
 *	  Module entry point of the waitlist extension: the GUCs, the shared
 *	  memory hooks and the promotion workers when preloaded, and the
 *	  transaction callbacks that keep per-backend state honest.
 *
 * IDENTIFICATION
 *	  src/waitlist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "engine.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *waitlist_database = NULL;
int			waitlist_worker_count = 1;
int			waitlist_naptime_ms = 1000;
int			waitlist_promotion_mode = WAITLIST_PROMOTION_INLINE;
int			waitlist_max_event_attempts = 15;
int			waitlist_event_retry_base_ms = 1000;
char	   *waitlist_notify_channel = NULL;
int			waitlist_outbox_max_attempts = 10;
int			waitlist_outbox_retry_base_ms = 1000;

static const struct config_enum_entry promotion_mode_options[] = {
	{"inline", WAITLIST_PROMOTION_INLINE, false},
	{"worker", WAITLIST_PROMOTION_WORKER, false},
	{NULL, 0, false}
};

/*
 * An aborted transaction takes its API frames and its wake-ups with it.  The
 * relays' NOTIFY is queued only at pre-commit, so a transaction that writes
 * outbox rows can still be prepared; a prepared transaction sends neither
 * NOTIFY nor wake-ups (its work is found by the relays' and workers' polls
 * once COMMIT PREPARED makes it visible), and nothing it noted leaks into
 * the session's next transaction.
 */
static void
waitlist_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			waitlist_outbox_at_pre_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			waitlist_wakes_at_xact_end(true);
			waitlist_join_rates_at_xact_end(true);
			waitlist_outbox_at_xact_end();
			break;
		case XACT_EVENT_PREPARE:
			waitlist_wakes_at_xact_end(false);
			waitlist_join_rates_at_xact_end(false);
			waitlist_outbox_at_xact_end();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			waitlist_api_reset_on_abort(InvalidSubTransactionId);
			waitlist_wakes_at_xact_end(false);
			waitlist_join_rates_at_xact_end(false);
			waitlist_outbox_at_xact_end();
			break;
		default:
			break;
	}
}

/*
 * An aborted subtransaction's outbox rows are gone, but the NOTIFY flag is
 * kept: a NOTIFY too many costs a relay one empty claim, one too few leaves
 * rows waiting for its poll.  The token signing key it read is forgotten:
 * the lock that held a rotation off went with the subtransaction.
 */
static void
waitlist_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		waitlist_api_reset_on_abort(mySubid);
		waitlist_forget_token_key();
	}
}

/* A NOTIFY channel is an identifier: it must fit in NAMEDATALEN. */
static bool
check_notify_channel(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A channel name must be shorter than %d bytes.", NAMEDATALEN);
		return false;
	}
	return true;
}

static void
register_workers(void)
{
	BackgroundWorker worker;
	int			i;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "waitlist", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "waitlist_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "waitlist worker", BGW_MAXLEN);
	for (i = 0; i < waitlist_worker_count; i++)
	{
		snprintf(worker.bgw_name, BGW_MAXLEN, "waitlist worker %d", i);
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

/*
 * Module load.  The GUCs exist wherever the library is loaded; shared memory
 * and the promotion workers only when it is preloaded.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("waitlist.naptime",
							"Sets the longest time a promotion worker sleeps between rounds.",
							"Workers wake earlier on commits that need them and at offer deadlines.",
							&waitlist_naptime_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("waitlist.promotion_mode",
							 "Sets who promotes when capacity comes back.",
							 "inline: the releasing transaction promotes; worker: it records the event and the promotion worker promotes.",
							 &waitlist_promotion_mode,
							 WAITLIST_PROMOTION_INLINE,
							 promotion_mode_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("waitlist.max_event_attempts",
							"Sets how often a worker tries a capacity event before marking it dead.",
							"Transient failures (lock and statement timeouts, deadlocks, serialization failures, cancels, lack of resources) are retried without counting.",
							&waitlist_max_event_attempts,
							15, 1, 100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("waitlist.event_retry_base",
							"Sets the first backoff after a failed attempt at a capacity event; it doubles with each attempt, up to 10 minutes.",
							NULL,
							&waitlist_event_retry_base_ms,
							1000, 10, 600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("waitlist.notify_channel",
							   "Sets the channel on which transactions that write outbox rows NOTIFY relays.",
							   "Empty (the default) sends no NOTIFY; relays then only poll.",
							   &waitlist_notify_channel,
							   "",
							   PGC_SUSET,
							   0,
							   check_notify_channel, NULL, NULL);

	DefineCustomIntVariable("waitlist.outbox_max_attempts",
							"Sets how often delivery of an outbox row may fail before it is dead-lettered.",
							NULL,
							&waitlist_outbox_max_attempts,
							10, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("waitlist.outbox_retry_base",
							"Sets the first backoff after a failed delivery; it doubles with each attempt.",
							NULL,
							&waitlist_outbox_retry_base_ms,
							1000, 1, 3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	RegisterXactCallback(waitlist_xact_callback, NULL);
	RegisterSubXactCallback(waitlist_subxact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
	{
		MarkGUCPrefixReserved("waitlist");
		return;
	}

	/* settings that exist only for the workers, fixed at server start */
	DefineCustomStringVariable("waitlist.database",
							   "Sets the database the promotion workers serve.",
							   NULL,
							   &waitlist_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("waitlist.workers",
							"Sets the number of promotion workers.",
							"Each worker owns a hash share of the resources.",
							&waitlist_worker_count,
							1, 1, WAITLIST_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("waitlist");

	waitlist_shmem_init();
	register_workers();
}
