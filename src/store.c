/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Data access: reading and locking a resource's row for the layers
 *	  above, and the checks of what a resource row may hold.
 *
 * The resource row is "the resource's lock": whoever changes free_units or
 * promotes holds it FOR NO KEY UPDATE to the end of the transaction, which
 * serializes promotion per resource while different resources proceed in
 * parallel.  Joins only read it.
 *
 * IDENTIFICATION
 *	  src/store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

#include "store.h"

/*
 * wave_budget: -1 without waves, else what the current (or a new) wave may
 * still offer.  The wave's end is clamped (WAITLIST_WAVE_END_SQL), so a bad
 * row fails no statement.
 */
#define RESOURCE_COLUMNS(closing, parties) \
	"SELECT free_units, max_waiting, booking_function," \
	"  CASE WHEN wave_size IS NULL THEN -1" \
	"       WHEN wave_started_at IS NULL" \
	"         OR " WAITLIST_WAVE_END_SQL " OPERATOR(pg_catalog.<=) pg_catalog.now() THEN wave_size" \
	"       ELSE GREATEST(wave_size OPERATOR(pg_catalog.-) wave_offers, 0) END," \
	"  wave_size IS NOT NULL AND (wave_started_at IS NULL" \
	"    OR " WAITLIST_WAVE_END_SQL " OPERATOR(pg_catalog.<=) pg_catalog.now())," \
	closing ", " parties \
	" FROM waitlist.resource r WHERE resource_id OPERATOR(pg_catalog.=) $1"

/*
 * closing (1.1): no offer may be made any more, as too little time is left
 * before the resource's offers_close_at (min_offer_ttl), or it has passed.
 */
#define CLOSING_1_0 "false"
#define CLOSING_1_1 \
	"(r.offers_close_at IS NOT NULL AND pg_catalog.now() OPERATOR(pg_catalog.>=)" \
	" (r.offers_close_at OPERATOR(pg_catalog.-) coalesce(r.min_offer_ttl, interval '0')))"

/* parties (1.1): whether the head of the line waits for its party to fit, and the fanout */
#define PARTIES_1_0 "true, 1"
#define PARTIES_1_1 "r.party_policy OPERATOR(pg_catalog.=) 'strict', r.offer_fanout"

#define RESOURCE_COLUMNS_1_0 RESOURCE_COLUMNS(CLOSING_1_0, PARTIES_1_0)
#define RESOURCE_COLUMNS_1_1 RESOURCE_COLUMNS(CLOSING_1_1, PARTIES_1_1)

/* [1]: a 1.1 schema */
static WaitlistPlan read_resource_plans[2] = {
	{RESOURCE_COLUMNS_1_0, 1, {TEXTOID}},
	{RESOURCE_COLUMNS_1_1, 1, {TEXTOID}}
};

static WaitlistPlan lock_resource_plans[2] = {
	{RESOURCE_COLUMNS_1_0 " FOR NO KEY UPDATE", 1, {TEXTOID}},
	{RESOURCE_COLUMNS_1_1 " FOR NO KEY UPDATE", 1, {TEXTOID}}
};

static WaitlistPlan try_lock_resource_plans[2] = {
	{RESOURCE_COLUMNS_1_0 " FOR NO KEY UPDATE SKIP LOCKED", 1, {TEXTOID}},
	{RESOURCE_COLUMNS_1_1 " FOR NO KEY UPDATE SKIP LOCKED", 1, {TEXTOID}}
};

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

	waitlist_execute(plan, values, NULL, false, 0);
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
	res->closing = DatumGetBool(SPI_getbinval(tuple, tupdesc, 6, &isnull));
	res->strict_parties = DatumGetBool(SPI_getbinval(tuple, tupdesc, 7, &isnull));
	res->offer_fanout = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 8, &isnull));
	return true;
}

/* fetch_resource(), erroring for an unknown resource unless missing_ok */
static bool
fetch_known_resource(WaitlistPlan *plan, text *resource_id, WaitlistResource *res,
					 bool missing_ok)
{
	if (fetch_resource(plan, resource_id, res))
		return true;
	if (!missing_ok)
		waitlist_resource_not_found(resource_id);
	return false;
}

/*
 * Read a resource's settings without locking it.  Returns false for an
 * unknown resource if missing_ok, else errors.
 */
bool
waitlist_read_resource_ext(text *resource_id, WaitlistResource *res, bool missing_ok)
{
	return fetch_known_resource(&read_resource_plans[waitlist_schema_is_1_1()],
								resource_id, res, missing_ok);
}

void
waitlist_read_resource(text *resource_id, WaitlistResource *res)
{
	(void) waitlist_read_resource_ext(resource_id, res, false);
}

/*
 * Take the resource's lock to the end of the transaction and read it.
 * Returns false for an unknown resource if missing_ok, else errors.
 */
bool
waitlist_lock_resource_ext(text *resource_id, WaitlistResource *res, bool missing_ok)
{
	return fetch_known_resource(&lock_resource_plans[waitlist_schema_is_1_1()],
								resource_id, res, missing_ok);
}

void
waitlist_lock_resource(text *resource_id, WaitlistResource *res)
{
	(void) waitlist_lock_resource_ext(resource_id, res, false);
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
	return fetch_resource(&try_lock_resource_plans[waitlist_schema_is_1_1()],
						  resource_id, res);
}

static WaitlistPlan count_owned_plan = {
	"SELECT pg_catalog.count(*) FROM waitlist.resource "
	"WHERE waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1",
	2, {INT4OID, INT4OID}, 0, true
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
	waitlist_execute(&count_owned_plan, values, NULL, true, 0);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	waitlist_api_end(&call);
	return count;
}

/*
 * Whether the database's schema is 1.1's (all of 1.1 comes with one update
 * script: its ranked line, accept sagas, offer extensions, tokens...).  A
 * database still on 1.0 runs this library too, and its tables lack their
 * columns.  The statements ask on every call, so the answer is kept until a
 * relation changes: an update of the extension alters its tables.
 */
static int	schema_1_1 = -1;	/* -1: not known */
static bool schema_callback_registered = false;

static void
forget_schema_version(Datum arg, Oid relid)
{
	schema_1_1 = -1;
}

bool
waitlist_schema_is_1_1(void)
{
	if (schema_1_1 < 0)
	{
		Oid			nspid = get_namespace_oid("waitlist", true);
		Oid			relid = OidIsValid(nspid) ? get_relname_relid("entry", nspid) : InvalidOid;

		if (!schema_callback_registered)
		{
			CacheRegisterRelcacheCallback(forget_schema_version, (Datum) 0);
			schema_callback_registered = true;
		}
		schema_1_1 = OidIsValid(relid) && get_attnum(relid, "rank_key") != InvalidAttrNumber;
	}
	return schema_1_1 == 1;
}

/* Refuse what needs the 1.1 schema on a database still on 1.0. */
void
waitlist_require_schema_1_1(const char *what)
{
	if (!waitlist_schema_is_1_1())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s needs version 1.1 of the waitlist extension", what),
				 errhint("Run ALTER EXTENSION waitlist UPDATE.")));
}

/*
 * Notification channels: a non-empty, flat array of known channel names;
 * with_booking admits the booking service's channel (a claim's, not a
 * resource's: fans are not notified through it).
 */
void
waitlist_check_channels(Datum channels, bool with_booking)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n = waitlist_flat_array(channels, TEXTOID, "channels", &elems, &nulls);
	int			i;

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channels must not be empty"),
				 errhint("Name at least one of email, sms, push, webhook%s.",
						 with_booking ? ", booking" : "")));
	for (i = 0; i < n; i++)
	{
		char	   *name = nulls[i] ? NULL : TextDatumGetCString(elems[i]);

		if (name == NULL ||
			(strcmp(name, "email") != 0 && strcmp(name, "sms") != 0 &&
			 strcmp(name, "push") != 0 && strcmp(name, "webhook") != 0 &&
			 !(with_booking && strcmp(name, "booking") == 0)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown notification channel \"%s\"", name ? name : "NULL"),
					 with_booking ? errhint("Channels are email, sms, push, webhook and booking.") :
					 name != NULL && strcmp(name, "booking") == 0 ?
					 errhint("Channel booking is the booking service's; fans are notified on email, sms, push and webhook.") :
					 errhint("Channels are email, sms, push and webhook.")));
	}
}

