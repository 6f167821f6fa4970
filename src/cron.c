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
 * pg_cron keys named jobs by (jobname, username) only, and one pg_cron
 * database serves every database of the cluster, so a job named
 * "waitlist-sweep" may belong to another role, another database or be
 * someone's own command.  Ours is the one with our database, our owner and
 * our command; nothing else is replaced or removed.
 *
 * IDENTIFICATION
 *	  src/cron.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "waitlist.h"

PG_FUNCTION_INFO_V1(waitlist_schedule_sweep);
PG_FUNCTION_INFO_V1(waitlist_unschedule_sweep);

#define SWEEP_JOB_NAME "waitlist-sweep"

static WaitlistPlan schema_plan = {
	"SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e "
	"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
	"WHERE e.extname OPERATOR(pg_catalog.=) 'waitlist'",
	0, {InvalidOid}
};

/* the job of that name and role, wherever and whatever it runs */
static WaitlistPlan named_job_plan = {
	"SELECT j.jobid, j.database, j.command FROM cron.job j "
	"WHERE j.jobname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
	"  AND j.username OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, TEXTOID}
};

static WaitlistPlan schedule_plan = {
	"SELECT cron.schedule($1, $2, $3)",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static WaitlistPlan unschedule_plan = {
	"SELECT cron.unschedule(j.jobid) FROM cron.job j "
	"WHERE j.jobname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
	"  AND j.username OPERATOR(pg_catalog.=) $2 "
	"  AND j.database OPERATOR(pg_catalog.=) $3 "
	"  AND j.command OPERATOR(pg_catalog.=) $4",
	4, {TEXTOID, TEXTOID, TEXTOID, TEXTOID}
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
 * What identifies our job, filled inside an API call (so the role is the
 * extension owner's): name, owner, database and command.  The command names
 * the extension's schema as pg_extension has it, quoted, so the job never
 * resolves waitlist_sweep() through a search_path.
 */
static void
sweep_job_identity(Datum *values)
{
	char	   *schema;

	waitlist_execute(&schema_plan, NULL, NULL, true, 0, NULL);
	if (SPI_processed != 1)
		elog(ERROR, "extension \"waitlist\" is not installed in this database");
	schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	values[0] = CStringGetTextDatum(SWEEP_JOB_NAME);
	values[1] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	values[2] = CStringGetTextDatum(get_database_name(MyDatabaseId));
	values[3] = CStringGetTextDatum(psprintf("SELECT %s.waitlist_sweep()",
											 quote_identifier(schema)));
}

/*
 * waitlist_schedule_sweep(schedule text) RETURNS bigint
 *
 * Creates our job "waitlist-sweep" or changes its schedule, and returns its
 * id.  pg_cron would let cron.schedule() overwrite a job of the same name
 * and role that runs elsewhere or runs something else; that job is not ours
 * to take over, so it is refused instead.
 */
Datum
waitlist_schedule_sweep(PG_FUNCTION_ARGS)
{
	Datum		job[4];
	Datum		values[3];
	bool		isnull;
	int64		jobid;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, "schedule");
	require_pg_cron();

	waitlist_api_begin(&call);
	sweep_job_identity(job);

	waitlist_execute(&named_job_plan, job, NULL, true, 0, NULL);
	if (SPI_processed > 0)
	{
		char	   *database = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		char	   *command = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

		if (database == NULL || command == NULL ||
			strcmp(database, TextDatumGetCString(job[2])) != 0 ||
			strcmp(command, TextDatumGetCString(job[3])) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("pg_cron job \"%s\" of role \"%s\" is not this database's sweep",
							SWEEP_JOB_NAME, TextDatumGetCString(job[1])),
					 errdetail("The job runs \"%s\" in database \"%s\".",
							   command ? command : "", database ? database : ""),
					 errhint("pg_cron allows one job of a name per role: unschedule that job, or schedule the sweep of this database by hand under another name.")));
	}

	values[0] = job[0];
	values[1] = PG_GETARG_DATUM(0);
	values[2] = job[3];
	waitlist_execute(&schedule_plan, values, NULL, false, 0, NULL);
	jobid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	waitlist_api_end(&call);

	PG_RETURN_INT64(jobid);
}

/*
 * waitlist_unschedule_sweep() RETURNS boolean
 *
 * Removes our job only: jobs of that name of other roles, for other
 * databases or with another command are left alone.
 */
Datum
waitlist_unschedule_sweep(PG_FUNCTION_ARGS)
{
	Datum		job[4];
	bool		removed;
	WaitlistApiCall call;

	require_pg_cron();
	waitlist_api_begin(&call);
	sweep_job_identity(job);
	waitlist_execute(&unschedule_plan, job, NULL, false, 0, NULL);
	removed = SPI_processed > 0;
	waitlist_api_end(&call);

	PG_RETURN_BOOL(removed);
}
