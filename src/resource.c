/*-------------------------------------------------------------------------
 *
 * resource.c
 *	  Waitlisted resources: creating and altering them, their settings
 *	  checked when they are set.
 *
 * IDENTIFICATION
 *	  src/resource.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(waitlist_create_resource);
PG_FUNCTION_INFO_V1(waitlist_alter_resource);

/* a channel list without repeats, in the order given */
#define DEDUPED_CHANNELS(param) \
	"(SELECT pg_catalog.array_agg(c ORDER BY n) FROM" \
	" (SELECT c, pg_catalog.min(n) AS n FROM pg_catalog.unnest(" param "::pg_catalog.text[]) WITH ORDINALITY u(c, n)" \
	"  GROUP BY c) d)"

static WaitlistPlan insert_resource_plan = {
	"INSERT INTO waitlist.resource (resource_id, offer_ttl, max_waiting, booking_function,"
	"                               channels, wave_size, wave_interval) "
	"SELECT $1, $2, $3, $4,"
	"       coalesce(" DEDUPED_CHANNELS("$5") ", '{webhook}'),"
	"       $6, $7 ON CONFLICT (resource_id) DO NOTHING",
	7, {TEXTOID, INTERVALOID, INT8OID, REGPROCEDUREOID, TEXTARRAYOID, INT4OID, INTERVALOID}
};

static WaitlistPlan alter_resource_plan = {
	"UPDATE waitlist.resource SET "
	"  offer_ttl = coalesce($2, offer_ttl), "
	"  max_waiting = CASE WHEN $4 THEN NULL ELSE coalesce($3, max_waiting) END, "
	"  booking_function = CASE WHEN $6 THEN NULL ELSE coalesce($5, booking_function) END, "
	"  channels = coalesce(" DEDUPED_CHANNELS("$7") ", channels), "
	"  wave_size = CASE WHEN $10 THEN NULL ELSE coalesce($8, wave_size) END, "
	"  wave_interval = CASE WHEN $10 THEN NULL ELSE coalesce($9, wave_interval) END, "
	"  updated_at = pg_catalog.now() "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1",
	10, {TEXTOID, INTERVALOID, INT8OID, BOOLOID, REGPROCEDUREOID, BOOLOID,
	TEXTARRAYOID, INT4OID, INTERVALOID, BOOLOID}
};

static void
check_offer_ttl(Datum ttl)
{
	waitlist_check_interval(ttl, "offer_ttl", WAITLIST_MAX_SETTING_INTERVAL,
							"An offer must stay open for some time before it expires.", NULL);
}

static void
check_max_waiting(int64 max_waiting)
{
	if (max_waiting <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_waiting must be positive"),
				 errhint("Pass NULL for a waitlist without a cap.")));
	if (max_waiting > WAITLIST_MAX_WAITING)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_waiting must not exceed " INT64_FORMAT, WAITLIST_MAX_WAITING),
				 errdetail("The largest cap allowed is " INT64_FORMAT " entries.", WAITLIST_MAX_WAITING),
				 errhint("Pass NULL for a waitlist without a cap.")));
}

/*
 * A booking function takes (resource_id text, user_id text, offer_id bigint,
 * idempotency_key text) and returns the reservation reference as text.  It
 * is checked when it is configured, not when the first fan accepts.
 */
static void
check_booking_function(Oid funcid)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("booking function %u does not exist", funcid)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->prokind == PROKIND_FUNCTION &&
		!proc->proretset &&
		proc->prorettype == TEXTOID &&
		proc->pronargs == 4 &&
		proc->proargtypes.values[0] == TEXTOID &&
		proc->proargtypes.values[1] == TEXTOID &&
		proc->proargtypes.values[2] == INT8OID &&
		proc->proargtypes.values[3] == TEXTOID;
	ReleaseSysCache(tuple);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("booking function %s has the wrong signature",
						format_procedure(funcid)),
				 errdetail("A booking function must take (resource_id text, user_id text, offer_id bigint, idempotency_key text) and return text.")));
}

/* Waves: a size and an interval within their bounds, given together. */
static void
check_waves(FunctionCallInfo fcinfo, int size_arg, int interval_arg, bool altering)
{
	bool		has_size = !PG_ARGISNULL(size_arg);
	bool		has_interval = !PG_ARGISNULL(interval_arg);

	if (has_size != has_interval && !altering)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wave_size and wave_interval must be given together")));
	if (has_size && PG_GETARG_INT32(size_arg) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wave_size must be positive")));
	if (has_size && PG_GETARG_INT32(size_arg) > WAITLIST_MAX_WAVE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wave_size must not exceed %d", WAITLIST_MAX_WAVE_SIZE),
				 errdetail("A wave offers at most %d units.", WAITLIST_MAX_WAVE_SIZE)));
	if (has_interval)
		waitlist_check_interval(PG_GETARG_DATUM(interval_arg), "wave_interval",
								WAITLIST_MAX_SETTING_INTERVAL,
								"A wave must last for some time before the next one starts.", NULL);
}

/*
 * waitlist_create_resource(resource_id text, offer_ttl interval, max_waiting
 * bigint, booking_function regprocedure, channels text[], wave_size integer,
 * wave_interval interval) RETURNS void
 */
Datum
waitlist_create_resource(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	Datum		values[7];
	char		nulls[7];
	WaitlistApiCall call;
	int			i;

	waitlist_check_not_null(fcinfo, 1, "offer_ttl");
	check_offer_ttl(PG_GETARG_DATUM(1));
	if (!PG_ARGISNULL(2))
		check_max_waiting(PG_GETARG_INT64(2));
	if (!PG_ARGISNULL(3))
		check_booking_function(PG_GETARG_OID(3));
	if (!PG_ARGISNULL(4))
		waitlist_check_channels(PG_GETARG_DATUM(4));
	check_waves(fcinfo, 5, 6, false);

	values[0] = PointerGetDatum(resource_id);
	nulls[0] = ' ';
	for (i = 1; i < 7; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}

	waitlist_api_begin(&call);
	waitlist_execute(&insert_resource_plan, values, nulls, false, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("waitlist resource \"%s\" already exists",
						text_to_cstring(resource_id)),
				 errhint("Use waitlist_alter_resource() to change its settings.")));
	waitlist_api_end(&call);

	PG_RETURN_VOID();
}

/*
 * waitlist_alter_resource(resource_id text, offer_ttl interval, max_waiting
 * bigint, clear_max_waiting boolean, booking_function regprocedure,
 * clear_booking_function boolean, channels text[], wave_size integer,
 * wave_interval interval, clear_waves boolean) RETURNS void
 *
 * A NULL setting stays as it is; the clear_* flags remove a cap, a booking
 * function or waves.  Open offers keep the deadline they were made with.
 */
Datum
waitlist_alter_resource(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	Datum		values[10];
	char		nulls[10];
	WaitlistApiCall call;
	int			i;

	waitlist_check_not_null(fcinfo, 3, "clear_max_waiting");
	waitlist_check_not_null(fcinfo, 5, "clear_booking_function");
	waitlist_check_not_null(fcinfo, 9, "clear_waves");
	if (!PG_ARGISNULL(1))
		check_offer_ttl(PG_GETARG_DATUM(1));
	if (!PG_ARGISNULL(2))
	{
		check_max_waiting(PG_GETARG_INT64(2));
		if (PG_GETARG_BOOL(3))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot both set and clear max_waiting")));
	}
	if (!PG_ARGISNULL(4))
	{
		check_booking_function(PG_GETARG_OID(4));
		if (PG_GETARG_BOOL(5))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot both set and clear booking_function")));
	}
	if (!PG_ARGISNULL(6))
		waitlist_check_channels(PG_GETARG_DATUM(6));
	check_waves(fcinfo, 7, 8, true);
	if ((!PG_ARGISNULL(7) || !PG_ARGISNULL(8)) && PG_GETARG_BOOL(9))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot both set and clear waves")));

	values[0] = PointerGetDatum(resource_id);
	nulls[0] = ' ';
	for (i = 1; i < 10; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}

	waitlist_api_begin(&call);
	/* lifting a wave limit may free units for people waiting: the gate comes first */
	waitlist_lock_resource_gate(resource_id, false);
	if (PG_ARGISNULL(7) != PG_ARGISNULL(8))
	{
		WaitlistResource res;

		waitlist_read_resource(resource_id, &res);
		if (res.wave_budget < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wave_size and wave_interval must be given together"),
					 errhint("The resource has no waves yet: set both.")));
	}
	waitlist_execute(&alter_resource_plan, values, nulls, false, 0);
	if (SPI_processed == 0)
		waitlist_resource_not_found(resource_id);
	waitlist_promote_if_free(resource_id);
	waitlist_api_end(&call);

	PG_RETURN_VOID();
}
