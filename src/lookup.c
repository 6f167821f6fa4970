/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Read-only look-ups for front ends that act for a fan: whose an entry
 *	  or an offer is (so that a front end can refuse a fan another fan's
 *	  entry in the transaction of the call it makes for them), and what the
 *	  offer a signed token names looks like now (for the offer page behind
 *	  a link).  They change nothing and take no lock.
 *
 * IDENTIFICATION
 *	  src/lookup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "store.h"

PG_FUNCTION_INFO_V1(waitlist_entry_owner);
PG_FUNCTION_INFO_V1(waitlist_offer_owner);
PG_FUNCTION_INFO_V1(waitlist_token_offer);

/*
 * (On Citus these run on the node of the resource: WAITLIST_FORWARD.)  An
 * entry made by this transaction was joined at the transaction's start.
 */
static WaitlistPlan entry_owner_plan = {
	"SELECT user_id, resource_id,"
	" joined_at OPERATOR(pg_catalog.=) pg_catalog.transaction_timestamp()"
	" FROM waitlist.entry WHERE entry_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}, 0, true
};

static WaitlistPlan offer_owner_plan = {
	"SELECT user_id, resource_id, entry_id FROM waitlist.offer"
	" WHERE offer_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}, 0, true
};

static WaitlistPlan token_offer_plan = {
	"SELECT state, expires_at, reservation_ref FROM waitlist.offer"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1 AND offer_id OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, INT8OID}
};

/* The call's result row, of values. */
static Datum
lookup_result(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	return HeapTupleHeaderGetDatum(SPI_returntuple(heap_form_tuple(tupdesc, values, nulls),
												   tupdesc));
}

/*
 * The owner of the entry or offer (what) whose id is the call's argument:
 * the plan's row (user_id, resource_id, and one more column) as the result.
 */
static Datum
owner_of(FunctionCallInfo fcinfo, WaitlistPlan *plan, const char *what)
{
	Datum		arg[1];
	Datum		values[3];
	bool		nulls[3];
	Datum		result;
	int			i;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, psprintf("%s_id", what));
	arg[0] = PG_GETARG_DATUM(0);

	waitlist_api_begin(&call);
	waitlist_execute(plan, arg, NULL, false, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("waitlist %s %lld does not exist", what, (long long) PG_GETARG_INT64(0))));
	for (i = 0; i < 3; i++)
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &nulls[i]);
	result = lookup_result(fcinfo, values, nulls);
	waitlist_api_end(&call);
	return result;
}

/*
 * waitlist_entry_owner(entry_id bigint, OUT user_id text, OUT resource_id
 * text, OUT joined_in_transaction boolean) RETURNS record
 *
 * joined_in_transaction tells a front end that called waitlist_join() in
 * this transaction whether the join made the entry or found it (a double
 * tap).
 */
Datum
waitlist_entry_owner(PG_FUNCTION_ARGS)
{
	WAITLIST_FORWARD(WAITLIST_ROUTE_ENTRY, 0);

	return owner_of(fcinfo, &entry_owner_plan, "entry");
}

/*
 * waitlist_offer_owner(offer_id bigint, OUT user_id text, OUT resource_id
 * text, OUT entry_id bigint) RETURNS record
 */
Datum
waitlist_offer_owner(PG_FUNCTION_ARGS)
{
	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

	return owner_of(fcinfo, &offer_owner_plan, "offer");
}

/*
 * waitlist_token_offer(token text, OUT offer_id bigint, OUT resource_id
 * text, OUT state text, OUT expires_at timestamptz, OUT reservation_ref
 * text) RETURNS record
 *
 * The offer a token names, verified as accept and decline by token verify
 * it (WL011 to WL014): what an offer page shows.  The state is the stored
 * one: an OPEN offer past expires_at is expired all the same.
 */
Datum
waitlist_token_offer(PG_FUNCTION_ARGS)
{
	text	   *resource_id;
	Datum		arg[2];
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	Datum		result;
	WaitlistApiCall call;

	WAITLIST_FORWARD(WAITLIST_ROUTE_TOKEN, 0);

	waitlist_check_not_null(fcinfo, 0, "token");

	waitlist_api_begin(&call);
	arg[1] = Int64GetDatum(waitlist_verify_offer_token(PG_GETARG_TEXT_PP(0), &resource_id));
	arg[0] = PointerGetDatum(resource_id);
	waitlist_execute(&token_offer_plan, arg, NULL, false, 0);
	/* the token named an offer a moment ago; it cannot have gone since */
	if (SPI_processed == 0)
		elog(ERROR, "offer %lld of a verified token vanished", (long long) DatumGetInt64(arg[1]));
	values[0] = arg[1];
	values[1] = arg[0];
	values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &nulls[2]);
	values[3] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &nulls[3]);
	values[4] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &nulls[4]);
	result = lookup_result(fcinfo, values, nulls);
	waitlist_api_end(&call);
	return result;
}
