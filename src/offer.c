/*-------------------------------------------------------------------------
 *
 * offer.c
 *	  SQL entry points that end an offer: accept (with its idempotency and
 *	  the booking function), decline, and the expiry sweep.  Each settles
 *	  the offer through waitlist_settle_offers(), which follows the unit of
 *	  capacity where the state machine sends it.  Also the signed tokens
 *	  that name an offer (token.c): accept and decline by token are accept
 *	  and decline after the token is verified.
 *
 * IDENTIFICATION
 *	  src/offer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(waitlist_accept);
PG_FUNCTION_INFO_V1(waitlist_decline);
PG_FUNCTION_INFO_V1(waitlist_sweep);
PG_FUNCTION_INFO_V1(waitlist_offer_token);
PG_FUNCTION_INFO_V1(waitlist_offer_token_for);
PG_FUNCTION_INFO_V1(waitlist_accept_token);
PG_FUNCTION_INFO_V1(waitlist_decline_token);
PG_FUNCTION_INFO_V1(waitlist_rotate_token_key);
PG_FUNCTION_INFO_V1(waitlist_token_key_material);

static WaitlistPlan offer_resource_plan = {
	"SELECT resource_id, expires_at FROM waitlist.offer WHERE offer_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};

/* the offer's resource, and the outcome of an earlier request with this key */
static WaitlistPlan offer_and_request_plan = {
	"SELECT o.resource_id, a.state, a.reservation_ref FROM waitlist.offer o"
	" LEFT JOIN waitlist.accept_request a"
	"   ON a.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"  AND a.offer_id OPERATOR(pg_catalog.=) o.offer_id"
	"  AND a.idempotency_key OPERATOR(pg_catalog.=) $2"
	" WHERE o.offer_id OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, TEXTOID}
};

/* the offer, locked, with what deciding it needs */
static WaitlistPlan lock_offer_plan = {
	"SELECT o.state, o.expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp(),"
	"       o.reservation_ref, e.user_id, r.booking_function "
	"FROM waitlist.offer o"
	"  JOIN waitlist.entry e ON e.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"                      AND e.entry_id OPERATOR(pg_catalog.=) o.entry_id"
	"  JOIN waitlist.resource r ON r.resource_id OPERATOR(pg_catalog.=) o.resource_id "
	"WHERE o.resource_id OPERATOR(pg_catalog.=) $1 AND o.offer_id OPERATOR(pg_catalog.=) $2 "
	"FOR UPDATE OF o",
	2, {TEXTOID, INT8OID}
};

static WaitlistPlan request_insert_plan = {
	"INSERT INTO waitlist.accept_request (resource_id, offer_id, idempotency_key) "
	"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
	3, {TEXTOID, INT8OID, TEXTOID}
};

static WaitlistPlan request_read_plan = {
	"SELECT state, reservation_ref FROM waitlist.accept_request "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1 AND offer_id OPERATOR(pg_catalog.=) $2"
	"  AND idempotency_key OPERATOR(pg_catalog.=) $3",
	3, {TEXTOID, INT8OID, TEXTOID}
};

static WaitlistPlan request_record_plan = {
	"UPDATE waitlist.accept_request SET state = $4, reservation_ref = $5 "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1 AND offer_id OPERATOR(pg_catalog.=) $2"
	"  AND idempotency_key OPERATOR(pg_catalog.=) $3",
	5, {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID}
};

/* A locked offer, as lock_offer() reads it. */
typedef struct LockedOffer
{
	char	   *state;
	bool		past_deadline;
	char	   *reservation_ref;
	text	   *user_id;
	Oid			booking_function;
} LockedOffer;

static Datum
text_or_null(const char *s, char *null)
{
	*null = s == NULL ? 'n' : ' ';
	return s == NULL ? (Datum) 0 : CStringGetTextDatum(s);
}

static void
offer_not_found(int64 offer_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("waitlist offer %lld does not exist", (long long) offer_id)));
}

/*
 * The resource an offer belongs to, and its deadline if expires_at is not
 * NULL; errors if there is no such offer.
 */
static text *
offer_resource(int64 offer_id, TimestampTz *expires_at)
{
	Datum		values[1] = {Int64GetDatum(offer_id)};
	bool		isnull;

	waitlist_execute(&offer_resource_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		offer_not_found(offer_id);
	if (expires_at != NULL)
		*expires_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 2, &isnull));
	return waitlist_spi_text(SPI_tuptable, 0, 1);
}

static void
lock_offer(text *resource_id, int64 offer_id, LockedOffer *offer)
{
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(offer_id)};
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	bool		isnull;
	Datum		d;

	waitlist_execute(&lock_offer_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		offer_not_found(offer_id);
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	offer->state = SPI_getvalue(tuple, tupdesc, 1);
	offer->past_deadline = DatumGetBool(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	offer->reservation_ref = SPI_getvalue(tuple, tupdesc, 3);
	offer->user_id = DatumGetTextPP(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	d = SPI_getbinval(tuple, tupdesc, 5, &isnull);
	offer->booking_function = isnull ? InvalidOid : DatumGetObjectId(d);
}

/*
 * An offer that cannot be decided any more: past its deadline (swept or
 * not), or already settled otherwise.
 */
static void
offer_not_open(int64 offer_id, const LockedOffer *offer)
{
	if (offer->past_deadline || strcmp(offer->state, "EXPIRED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_OFFER_EXPIRED),
				 errmsg("waitlist offer %lld has expired", (long long) offer_id),
				 errdetail("Offers must be answered before their expires_at.")));
	ereport(ERROR,
			(errcode(ERRCODE_WAITLIST_OFFER_NOT_OPEN),
			 errmsg("waitlist offer %lld is not open", (long long) offer_id),
			 errdetail("The offer is %s.", offer->state)));
}

/*
 * The offer an accept holds locked was no longer OPEN when the accept came
 * to settle it.  The API cannot do that (it is not re-entered from a
 * booking function), but a booking function run by a role that may write
 * waitlist.offer can, by hand.  The accept reports only what its own UPDATE
 * did, so it fails, and the booking goes with it.
 */
static void
offer_settled_under_accept(text *resource_id, int64 offer_id)
{
	LockedOffer offer;

	lock_offer(resource_id, offer_id, &offer);
	ereport(ERROR,
			(errcode(ERRCODE_WAITLIST_OFFER_NOT_OPEN),
			 errmsg("waitlist offer %lld was settled while it was being accepted",
					(long long) offer_id),
			 errdetail("The offer is %s; the accept and its booking are rolled back.",
					   offer.state)));
}

/* The state an event settles an offer in (what an accept request records). */
static const char *
outcome_of(WaitlistEvent event)
{
	return waitlist_find_rule(WAITLIST_ENTITY_OFFER, event)->to_state;
}

/*
 * Decide a new accept request (its accept_request row is inserted and
 * locks out the same key): book, settle the offer and record the outcome.
 * Returns the outcome; *reservation_ref gets the reference, if any.
 */
static const char *
decide_accept(text *resource_id, int64 offer_id, text *idempotency_key,
			  char **reservation_ref)
{
	LockedOffer offer;
	const char *outcome;
	char	   *conflict_message = NULL;
	Datum		request[5];
	char		request_nulls[5] = {' ', ' ', ' ', ' ', ' '};

	lock_offer(resource_id, offer_id, &offer);
	if (strcmp(offer.state, outcome_of(WAITLIST_EVENT_ACCEPT)) == 0)
	{
		/* accepted under another key: the one reservation there is */
		outcome = outcome_of(WAITLIST_EVENT_ACCEPT);
		*reservation_ref = offer.reservation_ref;
	}
	else if (strcmp(offer.state, "OPEN") != 0 || offer.past_deadline)
		offer_not_open(offer_id, &offer);
	else if (OidIsValid(offer.booking_function) &&
			 waitlist_call_booking(offer.booking_function, resource_id,
								   offer.user_id, offer_id, idempotency_key,
								   reservation_ref, &conflict_message) == WAITLIST_BOOKING_CONFLICT)
	{
		/* the seat is gone: the unit is retired, the fan keeps their place */
		outcome = outcome_of(WAITLIST_EVENT_BOOKING_CONFLICT);
		if (waitlist_settle_offer(WAITLIST_EVENT_BOOKING_CONFLICT, resource_id, offer_id,
								  NULL, idempotency_key, conflict_message) == 0)
			offer_settled_under_accept(resource_id, offer_id);
	}
	else
	{
		outcome = outcome_of(WAITLIST_EVENT_ACCEPT);
		if (waitlist_settle_offer(WAITLIST_EVENT_ACCEPT, resource_id, offer_id,
								  *reservation_ref, idempotency_key,
								  OidIsValid(offer.booking_function) ? "booked" : "booking requested") == 0)
			offer_settled_under_accept(resource_id, offer_id);
	}

	request[0] = PointerGetDatum(resource_id);
	request[1] = Int64GetDatum(offer_id);
	request[2] = PointerGetDatum(idempotency_key);
	request[3] = CStringGetTextDatum(outcome);
	request[4] = text_or_null(*reservation_ref, &request_nulls[4]);
	waitlist_execute(&request_record_plan, request, request_nulls, false, 0);
	return outcome;
}

/*
 * Accept the offer named by offer_id, or by token if that is not NULL (it
 * is verified first, and refused before anything is written), as
 * waitlist_accept() and waitlist_accept_token() do.
 *
 * Idempotent per key: the accept_request primary key makes a repeated key
 * wait for the first request and return its outcome, so the booking
 * function runs at most once per successful accept.  A different key on an
 * accepted offer returns the existing reservation.
 */
static Datum
accept_offer(FunctionCallInfo fcinfo, text *token, int64 offer_id, text *idempotency_key)
{
	text	   *resource_id;
	const char *outcome;
	char	   *reservation_ref = NULL;
	TupleDesc	tupdesc;
	Datum		result[2];
	bool		result_nulls[2];
	Datum		request[3];
	HeapTupleHeader rettuple;
	WaitlistApiCall call;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	waitlist_api_begin(&call);
	if (token != NULL)
		offer_id = waitlist_verify_offer_token(token, &resource_id);

	/* a key answered before: its outcome, with no lock and no write */
	request[0] = Int64GetDatum(offer_id);
	request[1] = PointerGetDatum(idempotency_key);
	waitlist_execute(&offer_and_request_plan, request, NULL, false, 0);
	if (SPI_processed == 0)
		offer_not_found(offer_id);
	resource_id = waitlist_spi_text(SPI_tuptable, 0, 1);
	outcome = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	reservation_ref = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (outcome == NULL)
	{
		request[0] = PointerGetDatum(resource_id);
		request[1] = Int64GetDatum(offer_id);
		request[2] = PointerGetDatum(idempotency_key);
		waitlist_execute(&request_insert_plan, request, NULL, false, 0);
		if (SPI_processed == 0)
		{
			/* this key was answered before: same answer, no second booking */
			waitlist_execute(&request_read_plan, request, NULL, false, 0);
			if (SPI_processed == 0)
				elog(ERROR, "accept request vanished after a conflicting insert");
			outcome = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			reservation_ref = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
			/* undecided only within the deciding transaction, which is not us */
			if (outcome == NULL)
				elog(ERROR, "accept request of offer %lld is undecided", (long long) offer_id);
		}
		else
			outcome = decide_accept(resource_id, offer_id, idempotency_key, &reservation_ref);
	}

	result[0] = CStringGetTextDatum(outcome);
	result_nulls[0] = false;
	result[1] = reservation_ref ? CStringGetTextDatum(reservation_ref) : (Datum) 0;
	result_nulls[1] = reservation_ref == NULL;
	rettuple = SPI_returntuple(heap_form_tuple(tupdesc, result, result_nulls), tupdesc);
	waitlist_api_end(&call);

	return HeapTupleHeaderGetDatum(rettuple);
}

/*
 * waitlist_accept(offer_id bigint, idempotency_key text, OUT state text,
 * OUT reservation_ref text) RETURNS record
 */
Datum
waitlist_accept(PG_FUNCTION_ARGS)
{
	waitlist_check_not_null(fcinfo, 0, "offer_id");
	return accept_offer(fcinfo, NULL, PG_GETARG_INT64(0),
						waitlist_id_arg(fcinfo, 1, "idempotency_key"));
}

/*
 * waitlist_accept_token(token text, idempotency_key text, OUT state text,
 * OUT reservation_ref text) RETURNS record
 */
Datum
waitlist_accept_token(PG_FUNCTION_ARGS)
{
	waitlist_check_not_null(fcinfo, 0, "token");
	return accept_offer(fcinfo, PG_GETARG_TEXT_PP(0), 0,
						waitlist_id_arg(fcinfo, 1, "idempotency_key"));
}

/*
 * Decline the offer named by offer_id, or by token if that is not NULL
 * (verified first): OPEN -> DECLINED, the entry ends DECLINED and the unit
 * goes to the next waiter.  A repeated decline returns false.
 */
static bool
decline_offer(text *token, int64 offer_id)
{
	text	   *resource_id;
	LockedOffer offer;
	WaitlistResource res;
	WaitlistApiCall call;
	bool		declined = false;

	waitlist_api_begin(&call);
	if (token != NULL)
		offer_id = waitlist_verify_offer_token(token, &resource_id);
	else
		resource_id = offer_resource(offer_id, NULL);
	lock_offer(resource_id, offer_id, &offer);
	if (strcmp(offer.state, outcome_of(WAITLIST_EVENT_DECLINE)) != 0)
	{
		if (strcmp(offer.state, "OPEN") != 0 || offer.past_deadline)
			offer_not_open(offer_id, &offer);
		waitlist_lock_resource(resource_id, &res);
		declined = waitlist_settle_offer(WAITLIST_EVENT_DECLINE, resource_id, offer_id,
										 NULL, NULL, NULL) > 0;
	}
	waitlist_api_end(&call);
	return declined;
}

/* waitlist_decline(offer_id bigint) RETURNS boolean */
Datum
waitlist_decline(PG_FUNCTION_ARGS)
{
	waitlist_check_not_null(fcinfo, 0, "offer_id");
	PG_RETURN_BOOL(decline_offer(NULL, PG_GETARG_INT64(0)));
}

/* waitlist_decline_token(token text) RETURNS boolean */
Datum
waitlist_decline_token(PG_FUNCTION_ARGS)
{
	waitlist_check_not_null(fcinfo, 0, "token");
	PG_RETURN_BOOL(decline_offer(PG_GETARG_TEXT_PP(0), 0));
}

/*
 * waitlist_offer_token(offer_id bigint) RETURNS text
 *
 * The signed token of an offer, for links: it expires with the offer.  Any
 * offer has one; that of a settled offer is refused as the offer is.
 */
Datum
waitlist_offer_token(PG_FUNCTION_ARGS)
{
	char		token[WAITLIST_TOKEN_MAX_CHARS + 1];
	int64		offer_id;
	text	   *resource_id;
	TimestampTz expires_at;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	offer_id = PG_GETARG_INT64(0);

	waitlist_api_begin(&call);
	resource_id = offer_resource(offer_id, &expires_at);
	waitlist_sign_offer_token(resource_id, offer_id, expires_at, token);
	waitlist_api_end(&call);

	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/*
 * waitlist.offer_token_for(resource_id text, offer_id bigint,
 * expires_at timestamptz) RETURNS text
 *
 * The token of an offer being made, for its offer_created outbox rows:
 * called by the promotion statement for each offer it makes, as the
 * extension owner.  Not part of the API.
 */
Datum
waitlist_offer_token_for(PG_FUNCTION_ARGS)
{
	char		token[WAITLIST_TOKEN_MAX_CHARS + 1];

	waitlist_sign_offer_token(PG_GETARG_TEXT_PP(0), PG_GETARG_INT64(1),
							  PG_GETARG_TIMESTAMPTZ(2), token);
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/*
 * waitlist_rotate_token_key() RETURNS integer
 *
 * A new signing key; the previous one verifies until the last offer that
 * exists now expires, then nothing.  Returns the new key's id.
 */
Datum
waitlist_rotate_token_key(PG_FUNCTION_ARGS)
{
	WaitlistApiCall call;
	int32		key_id;

	waitlist_require_read_committed("waitlist_rotate_token_key()",
									"Its transaction snapshot can predate offers signed with the old key, which would stop verifying before those offers expire.");

	waitlist_api_begin(&call);
	key_id = waitlist_rotate_token_keys();
	waitlist_api_end(&call);

	PG_RETURN_INT32(key_id);
}

/*
 * waitlist_sweep(max_offers integer) RETURNS integer
 *
 * The expiry sweep for pg_cron or any caller; returns the number expired.
 * Where no worker runs, it also promotes the units that releases, declines
 * and expiries handed on because a resource's gate was busy.
 */
Datum
waitlist_sweep(PG_FUNCTION_ARGS)
{
	int32		max_offers;
	int64		expired;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, "max_offers");
	max_offers = PG_GETARG_INT32(0);
	if (max_offers <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_offers must be positive")));

	waitlist_require_read_committed("waitlist_sweep()", NULL);
	waitlist_api_begin(&call);
	expired = waitlist_expire_due(max_offers, -1, 0);
	/* where no worker runs, the sweep also continues waves */
	if (!waitlist_defer_to_worker())
	{
		(void) waitlist_fold_pending(max_offers);
		(void) waitlist_promote_idle(max_offers);
	}
	waitlist_api_end(&call);

	PG_RETURN_INT32((int32) expired);
}

/*
 * waitlist.token_key_material() RETURNS bytea
 *
 * The secret of a new token key, for the install script's first key.
 */
Datum
waitlist_token_key_material(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(waitlist_new_token_key());
}
