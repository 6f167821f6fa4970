/*-------------------------------------------------------------------------
 *
 * cron.c
 *	  Scheduling the expiry sweep as a pg_cron job.
 *
 * pg_cron 1.4 runs jobs at one-minute granularity at best, so a scheduled
 * sweep is the backstop that expires offers within a minute of their
 * deadline; accept refuses a late offer on its own regardless.  The job runs
 * as the extension owner, since the API switches to it.
 *
 * IDENTIFICATION
 *	  src/cron.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "waitlist.h"

PG_FUNCTION_INFO_V1(waitlist_schedule_sweep);
PG_FUNCTION_INFO_V1(waitlist_unschedule_sweep);

#define SWEEP_JOB_NAME "waitlist-sweep"

static WaitlistPlan schedule_plan = {
	"SELECT cron.schedule($1, $2, $3)",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static WaitlistPlan unschedule_plan = {
	"SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1",
	1, {TEXTOID}
};

static void
require_pg_cron(void)
{
	if (!OidIsValid(get_extension_oid("pg_cron", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron is not installed in this database"),
				 errhint("Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.")));
}

/*
 * waitlist_schedule_sweep(schedule text) RETURNS bigint
 *
 * Creates or replaces the job "waitlist-sweep" and returns its id.
 */
Datum
waitlist_schedule_sweep(PG_FUNCTION_ARGS)
{
	Datum		values[3];
	char	   *schema;
	bool		isnull;
	int64		jobid;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, "schedule");
	require_pg_cron();

	/* our own schema, quoted: the job must find waitlist_sweep() wherever it lives */
	schema = get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid));
	values[0] = CStringGetTextDatum(SWEEP_JOB_NAME);
	values[1] = PG_GETARG_DATUM(0);
	values[2] = CStringGetTextDatum(psprintf("SELECT %s.waitlist_sweep()",
											 quote_identifier(schema)));

	waitlist_api_begin(&call);
	waitlist_execute(&schedule_plan, values, NULL, false, 0, NULL);
	jobid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	waitlist_api_end(&call);

	PG_RETURN_INT64(jobid);
}

/* waitlist_unschedule_sweep() RETURNS boolean */
Datum
waitlist_unschedule_sweep(PG_FUNCTION_ARGS)
{
	Datum		values[1] = {CStringGetTextDatum(SWEEP_JOB_NAME)};
	bool		removed;
	WaitlistApiCall call;

	require_pg_cron();
	waitlist_api_begin(&call);
	waitlist_execute(&unschedule_plan, values, NULL, false, 0, NULL);
	removed = SPI_processed > 0;
	waitlist_api_end(&call);

	PG_RETURN_BOOL(removed);
}
