/*-------------------------------------------------------------------------
 *
 * autonomous.c
 *	  Recording a refused booking report in a transaction of its own.
 *
 * A booking service that confirms a booking the waitlist no longer holds
 * (the saga ended: the unit may be someone else's by now), or confirms an
 * accepted offer with a second reservation, is refused with an error, and
 * the error rolls back everything its transaction wrote.  What the booking
 * system needs to hear (undo that booking) must outlive the refusal: a
 * short-lived background worker writes the outbox row and commits it, and
 * the refusing backend waits for it before it raises its error.  Such
 * reports are rare, so a worker per report costs nothing that matters.
 *
 * IDENTIFICATION
 *	  src/autonomous.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "store.h"

PGDLLEXPORT void waitlist_report_worker_main(Datum main_arg);

/* a reference, an event type or a detail, as the caller bounded it */
#define REPORT_TEXT_BYTES	1024

/* What the worker records, in the dynamic shared memory both attach. */
typedef struct BookingReport
{
	Oid			database;
	int64		offer_id;
	char		resource_id[WAITLIST_MAX_ID_BYTES + 1];
	char		event_type[NAMEDATALEN];
	char		reservation_ref[REPORT_TEXT_BYTES];
	char		detail[REPORT_TEXT_BYTES];
	bool		recorded;		/* set by the worker once it has committed */
} BookingReport;

/*
 * The booking service's outbox row: on channel 'booking', with what the
 * booking system needs to find and undo the booking.
 */
static WaitlistPlan record_report_plan = {
	"INSERT INTO waitlist.outbox"
	" (resource_id, entry_id, offer_id, user_id, channel, event_type, payload)"
	" SELECT o.resource_id, o.entry_id, o.offer_id, o.user_id, 'booking', $3,"
	"   pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
	"     'resource_id', o.resource_id, 'entry_id', o.entry_id, 'offer_id', o.offer_id,"
	"     'user_id', o.user_id, 'state', o.state, 'idempotency_key', o.idempotency_key,"
	"     'reservation_ref', $4, 'accepted_reservation_ref', o.reservation_ref,"
	"     'detail', $5))"
	" FROM waitlist.offer o"
	" WHERE o.resource_id OPERATOR(pg_catalog.=) $1 AND o.offer_id OPERATOR(pg_catalog.=) $2",
	5, {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Record a refused booking report of an offer as an outbox row of type
 * event_type, committed in a transaction of its own.  Returns false if it
 * could not be (no background worker slot free, the worker failed): the
 * caller then says so in its error.  Waits for the worker, interruptibly.
 */
bool
waitlist_record_booking_report(text *resource_id, int64 offer_id, const char *event_type,
							   const char *reservation_ref, const char *detail)
{
	dsm_segment *seg = dsm_create(sizeof(BookingReport), 0);
	BookingReport *report = dsm_segment_address(seg);
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	bool		recorded = false;

	memset(report, 0, sizeof(BookingReport));
	report->database = MyDatabaseId;
	report->offer_id = offer_id;
	text_to_cstring_buffer(resource_id, report->resource_id, sizeof(report->resource_id));
	strlcpy(report->event_type, event_type, sizeof(report->event_type));
	strlcpy(report->reservation_ref, reservation_ref, sizeof(report->reservation_ref));
	strlcpy(report->detail, detail, sizeof(report->detail));

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "waitlist", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "waitlist_report_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "waitlist booking report", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "waitlist booking report", BGW_MAXLEN);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (RegisterDynamicBackgroundWorker(&worker, &handle) &&
		WaitForBackgroundWorkerShutdown(handle) == BGWH_STOPPED)
		recorded = report->recorded;
	dsm_detach(seg);
	return recorded;
}

/*
 * The worker: attach, connect to the caller's database, and write the row
 * as the API does (in its frame, as the extension owner).
 */
void
waitlist_report_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	BookingReport *report;
	WaitlistApiCall call;
	Datum		values[5];

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("waitlist booking report: the reporting backend has gone")));
	report = dsm_segment_address(seg);
	BackgroundWorkerInitializeConnectionByOid(report->database, InvalidOid, 0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	waitlist_api_begin(&call);
	values[0] = CStringGetTextDatum(report->resource_id);
	values[1] = Int64GetDatum(report->offer_id);
	values[2] = CStringGetTextDatum(report->event_type);
	values[3] = CStringGetTextDatum(report->reservation_ref);
	values[4] = CStringGetTextDatum(report->detail);
	waitlist_execute(&record_report_plan, values, NULL, false, 0);
	if (SPI_processed != 1)
		elog(ERROR, "waitlist offer %lld vanished before its booking report was recorded",
			 (long long) report->offer_id);
	waitlist_api_end(&call);
	PopActiveSnapshot();
	CommitTransactionCommand();

	report->recorded = true;
	dsm_detach(seg);
	proc_exit(0);
}
