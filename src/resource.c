/*-------------------------------------------------------------------------
 *
 * resource.c
 *	  Waitlisted resources: creating and altering them, and reading or
 *	  locking a resource's row for the other API functions.
 *
 * The resource row is "the resource's lock": whoever changes free_units or
 * promotes holds it FOR NO KEY UPDATE to the end of the transaction, which
 * serializes promotion per resource while different resources proceed in
 * parallel.  Joins only read it.
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

#include "waitlist.h"

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
	"VALUES ($1, $2, $3, $4,"
	"        coalesce(" DEDUPED_CHANNELS("$5") ", '{webhook}'),"
	"        $6, $7) ON CONFLICT (resource_id) DO NOTHING",
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

/*
 * wave_budget: -1 without waves, else what the current (or a new) wave may
 * still offer.  The wave's end is clamped (WAITLIST_WAVE_END_SQL), so a bad
 * row fails no statement.
 */
#define RESOURCE_COLUMNS \
	"SELECT free_units, max_waiting, booking_function," \
	"  CASE WHEN wave_size IS NULL THEN -1" \
	"       WHEN wave_started_at IS NULL" \
	"         OR " WAITLIST_WAVE_END_SQL " OPERATOR(pg_catalog.<=) pg_catalog.now() THEN wave_size" \
	"       ELSE GREATEST(wave_size OPERATOR(pg_catalog.-) wave_offers, 0) END," \
	"  wave_size IS NOT NULL AND (wave_started_at IS NULL" \
	"    OR " WAITLIST_WAVE_END_SQL " OPERATOR(pg_catalog.<=) pg_catalog.now())" \
	" FROM waitlist.resource r WHERE resource_id OPERATOR(pg_catalog.=) $1"

static WaitlistPlan read_resource_plan = {
	RESOURCE_COLUMNS, 1, {TEXTOID}
};

static WaitlistPlan lock_resource_plan = {
	RESOURCE_COLUMNS " FOR NO KEY UPDATE", 1, {TEXTOID}
};

static WaitlistPlan try_lock_resource_plan = {
	RESOURCE_COLUMNS " FOR NO KEY UPDATE SKIP LOCKED", 1, {TEXTOID}
};

static WaitlistPlan give_back_plan = {
	"UPDATE waitlist.resource"
	"   SET free_units = free_units OPERATOR(pg_catalog.+) $2, updated_at = pg_catalog.now() "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, INT8OID}
};

/*
 * An interval setting: positive, and at most WAITLIST_MAX_SETTING_INTERVAL
 * (an offer window or a wave is minutes to days; a year is already absurd),
 * so that now() plus it can never leave the timestamp range.
 */
static void
check_interval_setting(Datum value, const char *name, const char *detail)
{
	Interval   *zero = palloc0(sizeof(Interval));
	Datum		max = DirectFunctionCall3(interval_in,
										  CStringGetDatum(WAITLIST_MAX_SETTING_INTERVAL),
										  ObjectIdGetDatum(InvalidOid),
										  Int32GetDatum(-1));

	if (!DatumGetBool(DirectFunctionCall2(interval_gt, value, IntervalPGetDatum(zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", name),
				 errdetail("%s", detail)));
	if (DatumGetBool(DirectFunctionCall2(interval_gt, value, max)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not exceed %s", name, WAITLIST_MAX_SETTING_INTERVAL),
				 errdetail("The longest %s allowed is %s.", name, WAITLIST_MAX_SETTING_INTERVAL)));
}

static void
check_offer_ttl(Datum ttl)
{
	check_interval_setting(ttl, "offer_ttl",
						   "An offer must stay open for some time before it expires.");
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

void
waitlist_resource_not_found(text *resource_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("waitlist resource \"%s\" does not exist",
					text_to_cstring(resource_id)),
			 errhint("Create it with waitlist_create_resource().")));
}

static bool
fetch_resource(WaitlistPlan *plan, text *resource_id, WaitlistResource *res)
{
	Datum		values[1] = {PointerGetDatum(resource_id)};
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	bool		isnull;
	Datum		d;

	waitlist_execute(plan, values, NULL, false, 0, NULL);
	if (SPI_processed == 0)
		return false;
	tupdesc = SPI_tuptable->tupdesc;
	tuple = SPI_tuptable->vals[0];
	res->free_units = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	d = SPI_getbinval(tuple, tupdesc, 2, &res->max_waiting_isnull);
	res->max_waiting = res->max_waiting_isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tuple, tupdesc, 3, &isnull);
	res->booking_function = isnull ? InvalidOid : DatumGetObjectId(d);
	res->wave_budget = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	res->new_wave = DatumGetBool(SPI_getbinval(tuple, tupdesc, 5, &isnull));
	return true;
}

/*
 * Read a resource's settings without locking it.  Returns false for an
 * unknown resource if missing_ok, else errors.
 */
bool
waitlist_read_resource_ext(text *resource_id, WaitlistResource *res, bool missing_ok)
{
	if (fetch_resource(&read_resource_plan, resource_id, res))
		return true;
	if (!missing_ok)
		waitlist_resource_not_found(resource_id);
	return false;
}

void
waitlist_read_resource(text *resource_id, WaitlistResource *res)
{
	(void) waitlist_read_resource_ext(resource_id, res, false);
}

/* Take the resource's lock to the end of the transaction and read it. */
void
waitlist_lock_resource(text *resource_id, WaitlistResource *res)
{
	if (!fetch_resource(&lock_resource_plan, resource_id, res))
		waitlist_resource_not_found(resource_id);
}

/*
 * Take the resource's lock only if no other transaction holds it, and read
 * it: for the sweep and the workers, which pass over a resource that an
 * open transaction has locked rather than stall on it.  Returns false if
 * it is locked (or gone).
 */
bool
waitlist_try_lock_resource(text *resource_id, WaitlistResource *res)
{
	return fetch_resource(&try_lock_resource_plan, resource_id, res);
}

/*
 * Return units to the free pool (after a decline, expiry, revocation) and
 * offer them to the next waiters, or hand them to the worker or the sweep
 * (see waitlist_promote_added_units()).  The caller holds the resource's
 * lock.
 */
void
waitlist_give_back_units(text *resource_id, int64 units)
{
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(units)};

	waitlist_execute(&give_back_plan, values, NULL, false, 0, NULL);
	waitlist_promote_added_units(resource_id);
}

static WaitlistPlan count_owned_plan = {
	"SELECT pg_catalog.count(*) FROM waitlist.resource "
	"WHERE waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1",
	2, {INT4OID, INT4OID}
};

/* How many resources a worker owns, for waitlist_worker_status(). */
int64
waitlist_count_owned_resources(int index, int nworkers)
{
	Datum		values[2] = {Int32GetDatum(index), Int32GetDatum(nworkers)};
	WaitlistApiCall call;
	bool		isnull;
	int64		count;

	waitlist_api_begin(&call);
	waitlist_execute(&count_owned_plan, values, NULL, true, 0, NULL);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	waitlist_api_end(&call);
	return count;
}

/* Notification channels: a non-empty, flat array of known channel names. */
void
waitlist_check_channels(Datum channels)
{
	ArrayType  *arr = DatumGetArrayTypeP(channels);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channels must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channels must not be empty"),
				 errhint("Name at least one of email, sms, push, webhook.")));
	for (i = 0; i < n; i++)
	{
		char	   *name = nulls[i] ? NULL : TextDatumGetCString(elems[i]);

		if (name == NULL ||
			(strcmp(name, "email") != 0 && strcmp(name, "sms") != 0 &&
			 strcmp(name, "push") != 0 && strcmp(name, "webhook") != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown notification channel \"%s\"", name ? name : "NULL"),
					 errhint("Channels are email, sms, push and webhook.")));
	}
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
		check_interval_setting(PG_GETARG_DATUM(interval_arg), "wave_interval",
							   "A wave must last for some time before the next one starts.");
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
	waitlist_execute(&insert_resource_plan, values, nulls, false, 0, NULL);
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
	waitlist_execute(&alter_resource_plan, values, nulls, false, 0, NULL);
	if (SPI_processed == 0)
		waitlist_resource_not_found(resource_id);
	waitlist_promote_if_free(resource_id);
	waitlist_api_end(&call);

	PG_RETURN_VOID();
}
