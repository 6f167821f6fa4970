/*-------------------------------------------------------------------------
 *
 * cron.c
 *	  Scheduling the expiry sweep and (1.1) the archiving as pg_cron jobs.
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
 * our command; nothing else is replaced or removed.  The archiving job
 * ("waitlist-archive") follows the same rules; its command differs only in
 * the age it passes.
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
#include "utils/timestamp.h"

#include "store.h"

PG_FUNCTION_INFO_V1(waitlist_schedule_sweep);
PG_FUNCTION_INFO_V1(waitlist_unschedule_sweep);
PG_FUNCTION_INFO_V1(waitlist_schedule_archive);
PG_FUNCTION_INFO_V1(waitlist_unschedule_archive);

/*
 * A job of ours: its pg_cron name, and the statement it runs, a call of
 * one of the extension's routines with no argument or one interval.
 */
typedef struct WaitlistCronJob
{
	const char *name;
	const char *verb;			/* "SELECT" or "CALL" */
	const char *routine;
	bool		interval_arg;
	const char *what;			/* for messages: "sweep", ... */
} WaitlistCronJob;

static const WaitlistCronJob sweep_job = {
	"waitlist-sweep", "SELECT", "waitlist_sweep", false, "sweep"
};

static const WaitlistCronJob archive_job = {
	"waitlist-archive", "CALL", "waitlist_archive_all", true, "archiving"
};

#define INTERVAL_ARG_SUFFIX "'::pg_catalog.interval)"

static WaitlistPlan schema_plan = {
	"SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e "
	"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
	"WHERE e.extname OPERATOR(pg_catalog.=) 'waitlist'",
	0, {InvalidOid}
};

/* the jobs of that name and role, wherever and whatever they run */
static WaitlistPlan named_job_plan = {
	"SELECT j.jobid, j.database, j.command FROM cron.job j "
	"WHERE j.jobname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
	"  AND j.username OPERATOR(pg_catalog.=) $2 "
	"ORDER BY j.jobid",
	2, {TEXTOID, TEXTOID}
};

static WaitlistPlan schedule_plan = {
	"SELECT cron.schedule($1, $2, $3)",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static WaitlistPlan unschedule_plan = {
	"SELECT cron.unschedule($1)",
	1, {INT8OID}
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
 * extension owner's): name, owner, database, and the start of the command
 * up to its argument.  The command names the extension's schema as
 * pg_extension has it, quoted, so the job never resolves our routine
 * through a search_path.
 */
static char *
job_identity(const WaitlistCronJob *job, Datum *values)
{
	char	   *schema;

	waitlist_execute(&schema_plan, NULL, NULL, true, 0);
	if (SPI_processed != 1)
		elog(ERROR, "extension \"waitlist\" is not installed in this database");
	schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	values[0] = CStringGetTextDatum(job->name);
	values[1] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	values[2] = CStringGetTextDatum(get_database_name(MyDatabaseId));
	return psprintf("%s %s.%s(", job->verb, quote_identifier(schema), job->routine);
}

/*
 * Whether a command is our job's: the prefix, then ")" or one interval
 * literal and ")".  A literal holds no quote, so nothing can follow it.
 */
static bool
is_our_command(const WaitlistCronJob *job, const char *prefix, const char *command)
{
	const char *rest;
	const char *close;

	if (command == NULL || strncmp(command, prefix, strlen(prefix)) != 0)
		return false;
	rest = command + strlen(prefix);
	if (!job->interval_arg)
		return strcmp(rest, ")") == 0;
	if (rest[0] != '\'' || (close = strchr(rest + 1, '\'')) == NULL)
		return false;
	return strcmp(close, INTERVAL_ARG_SUFFIX) == 0;
}

/*
 * Create our job or change its schedule and command, and return its id.
 * pg_cron would let cron.schedule() overwrite a job of the same name and
 * role that runs elsewhere or runs something else; that job is not ours to
 * take over, so it is refused instead.  Called inside an API call.
 */
static int64
schedule_job(const WaitlistCronJob *job, Datum schedule, const char *arg)
{
	Datum		identity[3];
	Datum		values[3];
	char	   *prefix = job_identity(job, identity);
	char	   *command;
	bool		isnull;
	uint64		row;

	command = arg == NULL ? psprintf("%s)", prefix) :
		psprintf("%s'%s" INTERVAL_ARG_SUFFIX, prefix, arg);
	Assert(is_our_command(job, prefix, command));

	waitlist_execute(&named_job_plan, identity, NULL, true, 0);
	for (row = 0; row < SPI_processed; row++)
	{
		char	   *database = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2);
		char	   *other = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 3);

		if (database == NULL ||
			strcmp(database, TextDatumGetCString(identity[2])) != 0 ||
			!is_our_command(job, prefix, other))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("pg_cron job \"%s\" of role \"%s\" is not this database's %s",
							job->name, TextDatumGetCString(identity[1]), job->what),
					 errdetail("The job runs \"%s\" in database \"%s\".",
							   other ? other : "", database ? database : ""),
					 errhint("pg_cron allows one job of a name per role: unschedule that job, or schedule the %s of this database by hand under another name.",
							 job->what)));
	}

	values[0] = identity[0];
	values[1] = schedule;
	values[2] = CStringGetTextDatum(command);
	waitlist_execute(&schedule_plan, values, NULL, false, 0);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Remove our job only: jobs of that name of other roles, for other
 * databases or with another command are left alone.  Called inside an API
 * call.
 */
static bool
unschedule_job(const WaitlistCronJob *job)
{
	Datum		identity[3];
	char	   *prefix = job_identity(job, identity);
	char	   *database = TextDatumGetCString(identity[2]);
	Datum	   *ours;
	int			nours = 0;
	int			i;
	uint64		row;

	waitlist_execute(&named_job_plan, identity, NULL, true, 0);
	ours = palloc((SPI_processed + 1) * sizeof(Datum));
	for (row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		Datum		jobid = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull);
		char	   *db = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2);
		char	   *command = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 3);

		if (!isnull && db != NULL && strcmp(db, database) == 0 &&
			is_our_command(job, prefix, command))
			ours[nours++] = jobid;
	}
	for (i = 0; i < nours; i++)
		waitlist_execute(&unschedule_plan, &ours[i], NULL, false, 0);
	return nours > 0;
}

/*
 * waitlist_schedule_sweep(schedule text) RETURNS bigint
 *
 * Creates our job "waitlist-sweep" or changes its schedule, and returns its
 * id.
 */
Datum
waitlist_schedule_sweep(PG_FUNCTION_ARGS)
{
	int64		jobid;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, "schedule");
	require_pg_cron();

	waitlist_api_begin(&call);
	jobid = schedule_job(&sweep_job, PG_GETARG_DATUM(0), NULL);
	waitlist_api_end(&call);

	PG_RETURN_INT64(jobid);
}

/*
 * waitlist_unschedule_sweep() RETURNS boolean
 */
Datum
waitlist_unschedule_sweep(PG_FUNCTION_ARGS)
{
	bool		removed;
	WaitlistApiCall call;

	require_pg_cron();
	waitlist_api_begin(&call);
	removed = unschedule_job(&sweep_job);
	waitlist_api_end(&call);

	PG_RETURN_BOOL(removed);
}

/*
 * waitlist_schedule_archive(schedule text, older_than interval) RETURNS bigint
 *
 * Creates our job "waitlist-archive", which calls waitlist_archive_all()
 * (batches, committed one by one), or changes its schedule and age, and
 * returns its id.  The age is checked now, as waitlist_archive() would.
 */
Datum
waitlist_schedule_archive(PG_FUNCTION_ARGS)
{
	int64		jobid;
	char	   *age;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, "schedule");
	waitlist_check_not_null(fcinfo, 1, "older_than");
	waitlist_check_archive_age(PG_GETARG_INTERVAL_P(1));
	require_pg_cron();

	/*
	 * One spelling of the age, read back the same whatever the job's
	 * IntervalStyle: the API frame pins IntervalStyle to postgres.
	 */
	waitlist_api_begin(&call);
	age = DatumGetCString(DirectFunctionCall1(interval_out, PG_GETARG_DATUM(1)));
	jobid = schedule_job(&archive_job, PG_GETARG_DATUM(0), age);
	waitlist_api_end(&call);

	PG_RETURN_INT64(jobid);
}

/*
 * waitlist_unschedule_archive() RETURNS boolean
 */
Datum
waitlist_unschedule_archive(PG_FUNCTION_ARGS)
{
	bool		removed;
	WaitlistApiCall call;

	require_pg_cron();
	waitlist_api_begin(&call);
	removed = unschedule_job(&archive_job);
	waitlist_api_end(&call);

	PG_RETURN_BOOL(removed);
}
