/*-------------------------------------------------------------------------
 *
 * offer.c
 *	  SQL entry points that decide an offer: accept (with its idempotency,
 *	  the booking function, or the accept saga of an external booking
 *	  service and its reports), decline, extension, and the expiry sweep.
 *	  Each changes the offer through waitlist_settle_offers(), which follows
 *	  the unit of capacity where the state machine sends it.  Also the
 *	  signed tokens that name an offer (token.c): accept and decline by
 *	  token are accept and decline after the token is verified.
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
#include "mb/pg_wchar.h"
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
PG_FUNCTION_INFO_V1(waitlist_booking_confirmed);
PG_FUNCTION_INFO_V1(waitlist_booking_failed);
PG_FUNCTION_INFO_V1(waitlist_extend_offer);

/* the longest booking failure reason kept, in bytes */
#define MAX_REASON_BYTES	1000

/*
 * (On Citus these run on the node of the offer's resource, WAITLIST_FORWARD
 * saw to that: they read that node's shards only.)
 */
static WaitlistPlan offer_resource_plan = {
	"SELECT resource_id, expires_at FROM waitlist.offer WHERE offer_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}, 0, true
};

/* the offer's resource, and the outcome of an earlier request with this key */
static WaitlistPlan offer_and_request_plan = {
	"SELECT o.resource_id, a.state, a.reservation_ref FROM waitlist.offer o"
	" LEFT JOIN waitlist.accept_request a"
	"   ON a.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"  AND a.offer_id OPERATOR(pg_catalog.=) o.offer_id"
	"  AND a.idempotency_key OPERATOR(pg_catalog.=) $2"
	" WHERE o.offer_id OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, TEXTOID}, 0, true
};

/*
 * The offer, locked, with what deciding it needs; the columns of the saga
 * and of extensions ("saga") exist from 1.1 on.
 */
#define LOCK_OFFER_SQL(saga) \
	"SELECT o.state, o.expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()," \
	"       o.reservation_ref, e.user_id, r.booking_function, " saga " " \
	"FROM waitlist.offer o" \
	"  JOIN waitlist.entry e ON e.resource_id OPERATOR(pg_catalog.=) o.resource_id" \
	"                      AND e.entry_id OPERATOR(pg_catalog.=) o.entry_id" \
	"  JOIN waitlist.resource r ON r.resource_id OPERATOR(pg_catalog.=) o.resource_id " \
	"WHERE o.resource_id OPERATOR(pg_catalog.=) $1 AND o.offer_id OPERATOR(pg_catalog.=) $2 " \
	"FOR UPDATE OF o"

static WaitlistPlan lock_offer_plans[2] = {
	/* [false]: a 1.0 schema, without sagas or extensions */
	{LOCK_OFFER_SQL("false, NULL::pg_catalog.interval, 0, 0, false,"
					" NULL::pg_catalog.interval, NULL::pg_catalog.interval"),
	2, {TEXTOID, INT8OID}},
	{LOCK_OFFER_SQL("r.booking OPERATOR(pg_catalog.=) 'external', r.booking_timeout,"
					" o.booking_attempts, r.booking_max_attempts,"
					" o.booking_deadline OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp(),"
					" coalesce(r.max_offer_extension, r.offer_ttl), o.extended_by"),
	2, {TEXTOID, INT8OID}}
};

/* an offer's state and reservation now, for a request that joined a saga */
static WaitlistPlan offer_state_plan = {
	"SELECT state, reservation_ref FROM waitlist.offer"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1 AND offer_id OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, INT8OID}
};

/* an extension asked for before under this key: the deadline it gave */
static WaitlistPlan extension_read_plan = {
	"SELECT expires_at FROM waitlist.offer_extension"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1 AND offer_id OPERATOR(pg_catalog.=) $2"
	"   AND idempotency_key OPERATOR(pg_catalog.=) $3",
	3, {TEXTOID, INT8OID, TEXTOID}
};

/* the locked offer's extension under a new key, with the deadline it gives */
static WaitlistPlan extension_insert_plan = {
	"INSERT INTO waitlist.offer_extension"
	" (resource_id, offer_id, idempotency_key, by_interval, reason, expires_at, actor)"
	" SELECT $1, $2, $3, $4, $5, o.expires_at OPERATOR(pg_catalog.+) $4, $6"
	" FROM waitlist.offer o"
	" WHERE o.resource_id OPERATOR(pg_catalog.=) $1 AND o.offer_id OPERATOR(pg_catalog.=) $2"
	" ON CONFLICT DO NOTHING"
	" RETURNING expires_at",
	6, {TEXTOID, INT8OID, TEXTOID, INTERVALOID, TEXTOID, NAMEOID}
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
	/* from 1.1 on: the accept saga and extensions */
	bool		external;		/* booked by an external booking service */
	Interval   *booking_timeout;
	int32		booking_attempts;	/* made so far */
	int32		booking_max_attempts;
	bool		saga_past_deadline;
	Interval   *max_extension;	/* in all, per offer */
	Interval   *extended_by;
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

	waitlist_execute(&lock_offer_plans[waitlist_schema_is_1_1()], values, NULL,
					 false, 0);
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
	offer->external = DatumGetBool(SPI_getbinval(tuple, tupdesc, 6, &isnull));
	d = SPI_getbinval(tuple, tupdesc, 7, &isnull);
	offer->booking_timeout = isnull ? NULL : DatumGetIntervalP(d);
	offer->booking_attempts = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 8, &isnull));
	offer->booking_max_attempts = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 9, &isnull));
	d = SPI_getbinval(tuple, tupdesc, 10, &isnull);
	offer->saga_past_deadline = !isnull && DatumGetBool(d);
	d = SPI_getbinval(tuple, tupdesc, 11, &isnull);
	offer->max_extension = isnull ? NULL : DatumGetIntervalP(d);
	d = SPI_getbinval(tuple, tupdesc, 12, &isnull);
	offer->extended_by = isnull ? NULL : DatumGetIntervalP(d);
}

/*
 * An offer that cannot be decided any more: past its deadline (swept or
 * not), or already settled otherwise.
 */
static void
offer_not_open(int64 offer_id, const LockedOffer *offer)
{
	if (strcmp(offer->state, "EXPIRED") == 0 ||
		(strcmp(offer->state, "OPEN") == 0 && offer->past_deadline))
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
 * locks out the same key): book, or ask the external booking service to
 * book, settle the offer and record the outcome.  Returns the outcome;
 * *reservation_ref gets the reference, if any.
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
	WaitlistOfferChange change = {.idempotency_key = idempotency_key};
	bool		fanned_out;

	/* a unit offered to several fans goes to the first to get here */
	fanned_out = waitlist_lock_unit_offers(resource_id, offer_id);
	lock_offer(resource_id, offer_id, &offer);
	if (strcmp(offer.state, outcome_of(WAITLIST_EVENT_ACCEPT)) == 0)
	{
		/* accepted under another key: the one reservation there is */
		outcome = outcome_of(WAITLIST_EVENT_ACCEPT);
		*reservation_ref = offer.reservation_ref;
	}
	else if (strcmp(offer.state, outcome_of(WAITLIST_EVENT_REQUEST_BOOKING)) == 0)
	{
		/* another key joins the saga in flight: one booking request */
		outcome = outcome_of(WAITLIST_EVENT_REQUEST_BOOKING);
	}
	else if (strcmp(offer.state, "OPEN") != 0 || offer.past_deadline)
		offer_not_open(offer_id, &offer);
	else if (offer.external)
	{
		/* the booking service is asked through the outbox; the unit stays held */
		outcome = outcome_of(WAITLIST_EVENT_REQUEST_BOOKING);
		change.interval = offer.booking_timeout;
		if (waitlist_settle_offer(WAITLIST_EVENT_REQUEST_BOOKING, resource_id, offer_id,
								  &change) == 0)
			offer_settled_under_accept(resource_id, offer_id);
	}
	else if (OidIsValid(offer.booking_function) &&
			 waitlist_call_booking(offer.booking_function, resource_id,
								   offer.user_id, offer_id, idempotency_key,
								   reservation_ref, &conflict_message) == WAITLIST_BOOKING_CONFLICT)
	{
		/* the seat is gone: the unit is retired, the fan keeps their place */
		outcome = outcome_of(WAITLIST_EVENT_BOOKING_CONFLICT);
		change.detail = conflict_message;
		if (waitlist_settle_offer(WAITLIST_EVENT_BOOKING_CONFLICT, resource_id, offer_id,
								  &change) == 0)
			offer_settled_under_accept(resource_id, offer_id);
	}
	else
	{
		outcome = outcome_of(WAITLIST_EVENT_ACCEPT);
		change.reservation_ref = *reservation_ref;
		change.detail = OidIsValid(offer.booking_function) ? "booked" : "booking requested";
		if (waitlist_settle_offer(WAITLIST_EVENT_ACCEPT, resource_id, offer_id, &change) == 0)
			offer_settled_under_accept(resource_id, offer_id);
	}
	/* the unit is taken (or gone): the other fans it was offered to go back in line */
	if (fanned_out)
		(void) waitlist_fill_unit(resource_id, offer_id);

	request[0] = PointerGetDatum(resource_id);
	request[1] = Int64GetDatum(offer_id);
	request[2] = PointerGetDatum(idempotency_key);
	request[3] = CStringGetTextDatum(outcome);
	request[4] = text_or_null(*reservation_ref, &request_nulls[4]);
	waitlist_execute(&request_record_plan, request, request_nulls, false, 0);
	return outcome;
}

/*
 * A request that joined an accept saga answers with where the saga is now:
 * still ACCEPTING, or ACCEPTED with its reservation, FAILED or EXPIRED.
 */
static const char *
saga_outcome(text *resource_id, int64 offer_id, char **reservation_ref)
{
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(offer_id)};

	waitlist_execute(&offer_state_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		offer_not_found(offer_id);
	*reservation_ref = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Accept the offer named by offer_id, or by token if that is not NULL (it
 * is verified first, and refused before anything is written), as
 * waitlist_accept() and waitlist_accept_token() do.
 *
 * Idempotent per key: the accept_request primary key makes a repeated key
 * wait for the first request and return its outcome, so the booking
 * function runs at most once per successful accept.  A different key on an
 * accepted offer returns the existing reservation.  On a resource booked by
 * an external service the accept starts the saga (ACCEPTING); a repeated
 * key, or another key, then answers with the saga's state.
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
	if (strcmp(outcome, outcome_of(WAITLIST_EVENT_REQUEST_BOOKING)) == 0)
		outcome = saga_outcome(resource_id, offer_id, &reservation_ref);

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
	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

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
	WAITLIST_FORWARD(WAITLIST_ROUTE_TOKEN, 0);

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
	WaitlistOfferChange change = {0};
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
										 &change) > 0;
	}
	waitlist_api_end(&call);
	return declined;
}

/* waitlist_decline(offer_id bigint) RETURNS boolean */
Datum
waitlist_decline(PG_FUNCTION_ARGS)
{
	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	PG_RETURN_BOOL(decline_offer(NULL, PG_GETARG_INT64(0)));
}

/* waitlist_decline_token(token text) RETURNS boolean */
Datum
waitlist_decline_token(PG_FUNCTION_ARGS)
{
	WAITLIST_FORWARD(WAITLIST_ROUTE_TOKEN, 0);

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

	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

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
	List	   *answers;

	waitlist_check_not_null(fcinfo, 0, "max_offers");
	max_offers = PG_GETARG_INT32(0);
	if (max_offers <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_offers must be positive")));

	waitlist_require_read_committed("waitlist_sweep()", NULL);
	/* on a cluster, each node sweeps its own resources, up to max_offers */
	if (waitlist_fanned_out(fcinfo, &answers))
		PG_RETURN_INT32((int32) Min(waitlist_sum_of_answers(answers), PG_INT32_MAX));
	waitlist_api_begin(&call);
	expired = waitlist_expire_due(max_offers, -1, 0);
	/* sagas past their deadline end as well, in what is left of the batch */
	if (expired < max_offers)
		expired += waitlist_end_due_sagas(max_offers - expired, -1, 0);
	/* and unconfirmed places past their confirm_by, lines past their cutoff */
	(void) waitlist_end_due_places(max_offers, -1, 0);
	(void) waitlist_close_due(max_offers, -1, 0);
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

/* --- the accept saga: the booking service reports ------------------------ */

/*
 * The offer of a booking report, locked: the report is for a saga, so a
 * resource that never had one (a 1.0 schema) cannot have it either.
 */
static text *
lock_reported_offer(int64 offer_id, LockedOffer *offer)
{
	text	   *resource_id;

	waitlist_require_schema_1_1("a booking report");
	resource_id = offer_resource(offer_id, NULL);
	lock_offer(resource_id, offer_id, offer);
	return resource_id;
}

/* A report for an offer whose booking was never asked for. */
static void
no_booking_requested(int64 offer_id, const LockedOffer *offer)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("waitlist offer %lld has no booking in progress", (long long) offer_id),
			 errdetail("The offer is %s; only an accepted offer of a resource with booking => 'external' is booked by the booking service.",
					   offer->state)));
}

/*
 * A booking report the waitlist must refuse, because the booking system
 * booked what the waitlist does not hold for that booking; it has to be
 * undone.  The report is recorded (an outbox row for the booking service,
 * committed whatever becomes of this transaction), then refused.
 */
static void
refuse_booking(text *resource_id, int64 offer_id, const LockedOffer *offer,
			   const char *reservation_ref, bool late)
{
	const char *event_type = late ? "booking_late_confirmation" : "booking_duplicate_confirmation";
	char	   *detail = psprintf(late ? "the booking was confirmed after the offer ended %s" :
								  "the offer was booked as %s already",
								  late ? offer->state : offer->reservation_ref);
	bool		recorded;

	recorded = waitlist_record_booking_report(resource_id, offer_id, event_type,
											  reservation_ref, detail);
	if (!recorded)
		ereport(WARNING,
				(errmsg("could not record the refused booking %s of waitlist offer %lld",
						reservation_ref, (long long) offer_id),
				 errdetail("No background worker could be started to write its %s outbox row.",
						   event_type),
				 errhint("Raise max_worker_processes; meanwhile undo booking %s by hand.",
						 reservation_ref)));
	if (late)
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_LATE_CONFIRMATION),
				 errmsg("confirmation of booking %s for waitlist offer %lld came too late",
						reservation_ref, (long long) offer_id),
				 errdetail("The offer is %s: its accept saga ended first, and its unit may have gone to someone else.",
						   offer->state),
				 recorded ? errhint("Undo the booking: a %s outbox row on channel 'booking' says so.",
									event_type) : 0));
	ereport(ERROR,
			(errcode(ERRCODE_WAITLIST_DUPLICATE_BOOKING),
			 errmsg("waitlist offer %lld was booked twice", (long long) offer_id),
			 errdetail("It was confirmed as booking %s, and now as booking %s.",
					   offer->reservation_ref, reservation_ref),
			 recorded ? errhint("Undo booking %s: a %s outbox row on channel 'booking' says so.",
								reservation_ref, event_type) : 0));
}

/*
 * waitlist_booking_confirmed(offer_id bigint, reservation_ref text)
 * RETURNS boolean
 *
 * The booking service booked the seat: ACCEPTING -> ACCEPTED, the unit is
 * consumed.  The same reservation again returns false; another one for an
 * accepted offer is a double booking (WL016), and one after the saga ended
 * is too late (WL015); both are recorded for the booking system to undo.
 * A confirmation past the saga's deadline that finds it still ACCEPTING
 * (not yet ended by the worker or the sweep) is taken: the unit is still
 * held for it.
 */
Datum
waitlist_booking_confirmed(PG_FUNCTION_ARGS)
{
	int64		offer_id;
	text	   *reservation_ref;
	char	   *ref;
	text	   *resource_id;
	LockedOffer offer;
	WaitlistApiCall call;
	WaitlistOfferChange change = {.detail = "booked"};
	bool		confirmed = false;

	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	offer_id = PG_GETARG_INT64(0);
	reservation_ref = waitlist_id_arg(fcinfo, 1, "reservation_ref");
	ref = text_to_cstring(reservation_ref);

	waitlist_api_begin(&call);
	resource_id = lock_reported_offer(offer_id, &offer);
	if (strcmp(offer.state, outcome_of(WAITLIST_EVENT_REQUEST_BOOKING)) == 0)
	{
		change.reservation_ref = ref;
		confirmed = waitlist_settle_offer(WAITLIST_EVENT_BOOKING_CONFIRMED, resource_id,
										  offer_id, &change) > 0;
		if (!confirmed)
			elog(ERROR, "waitlist offer %lld left ACCEPTING while locked", (long long) offer_id);
	}
	else if (strcmp(offer.state, outcome_of(WAITLIST_EVENT_BOOKING_CONFIRMED)) == 0)
	{
		if (offer.reservation_ref == NULL || strcmp(offer.reservation_ref, ref) != 0)
			refuse_booking(resource_id, offer_id, &offer, ref, false);
	}
	else if (strcmp(offer.state, "OPEN") == 0)
		no_booking_requested(offer_id, &offer);
	else
		refuse_booking(resource_id, offer_id, &offer, ref, true);
	waitlist_api_end(&call);

	PG_RETURN_BOOL(confirmed);
}

/*
 * waitlist_booking_failed(offer_id bigint, reason text, retryable boolean)
 * RETURNS text
 *
 * The booking service could not book.  Not retryable (the seat is gone):
 * FAILED, the unit is retired and the fan is back at their place in line.
 * Retryable: another booking request after a backoff while attempts and
 * the deadline allow, else EXPIRED and the unit goes to the next fan.
 * Returns the offer's state then; a report for a saga that has ended
 * changes nothing and returns the state it ended in.
 */
Datum
waitlist_booking_failed(PG_FUNCTION_ARGS)
{
	int64		offer_id;
	bool		retryable;
	char	   *reason = NULL;
	text	   *resource_id;
	LockedOffer offer;
	WaitlistResource res;
	WaitlistApiCall call;
	WaitlistEvent event;
	WaitlistOfferChange change = {0};
	const char *state;

	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	waitlist_check_not_null(fcinfo, 2, "retryable");
	offer_id = PG_GETARG_INT64(0);
	retryable = PG_GETARG_BOOL(2);
	if (!PG_ARGISNULL(1))
	{
		reason = text_to_cstring(PG_GETARG_TEXT_PP(1));
		reason[pg_mbcliplen(reason, strlen(reason), MAX_REASON_BYTES)] = '\0';
	}

	waitlist_api_begin(&call);
	resource_id = lock_reported_offer(offer_id, &offer);
	state = offer.state;
	if (strcmp(offer.state, "OPEN") == 0)
		no_booking_requested(offer_id, &offer);
	else if (strcmp(offer.state, outcome_of(WAITLIST_EVENT_REQUEST_BOOKING)) == 0)
	{
		if (!retryable)
			event = WAITLIST_EVENT_BOOKING_FAILED;
		else if (offer.booking_attempts < offer.booking_max_attempts &&
				 !offer.saga_past_deadline)
			event = WAITLIST_EVENT_BOOKING_RETRY;
		else
		{
			/* the unit goes back: the resource's row comes after the offer's */
			event = WAITLIST_EVENT_BOOKING_EXHAUSTED;
			waitlist_lock_resource(resource_id, &res);
		}
		change.detail = reason;
		if (waitlist_settle_offer(event, resource_id, offer_id, &change) == 0)
			elog(ERROR, "waitlist offer %lld left ACCEPTING while locked", (long long) offer_id);
		state = waitlist_find_rule(WAITLIST_ENTITY_OFFER, event)->to_state;
	}
	waitlist_api_end(&call);

	PG_RETURN_TEXT_P(cstring_to_text(state));
}

/* --- more time to answer ------------------------------------------------- */

/*
 * waitlist_extend_offer(offer_id bigint, by_interval interval, reason text,
 * idempotency_key text) RETURNS timestamptz
 *
 * Moves an open offer's deadline by_interval later; the unit stays held.
 * Idempotent per key (the deadline it gave, even once the offer is
 * settled), bounded in all by the resource's max_offer_extension (one
 * offer_ttl unless set), audited as a transition and told to the fan, with
 * a new token (the old one names the old deadline).
 */
Datum
waitlist_extend_offer(PG_FUNCTION_ARGS)
{
	int64		offer_id;
	Interval   *by;
	text	   *reason;
	text	   *idempotency_key;
	text	   *resource_id;
	LockedOffer offer;
	WaitlistApiCall call;
	WaitlistOfferChange change = {0};
	Datum		values[6];
	bool		isnull;
	Datum		deadline;

	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	offer_id = PG_GETARG_INT64(0);
	waitlist_check_not_null(fcinfo, 1, "by_interval");
	waitlist_check_interval(PG_GETARG_DATUM(1), "by_interval", WAITLIST_MAX_SETTING_INTERVAL,
							"An extension gives the fan more time.", NULL);
	by = PG_GETARG_INTERVAL_P(1);
	reason = waitlist_id_arg(fcinfo, 2, "reason");
	idempotency_key = waitlist_id_arg(fcinfo, 3, "idempotency_key");

	waitlist_api_begin(&call);
	waitlist_require_schema_1_1("waitlist_extend_offer()");
	resource_id = offer_resource(offer_id, NULL);
	values[0] = PointerGetDatum(resource_id);
	values[1] = Int64GetDatum(offer_id);
	values[2] = PointerGetDatum(idempotency_key);
	values[3] = IntervalPGetDatum(by);
	values[4] = PointerGetDatum(reason);
	values[5] = NameGetDatum(waitlist_role_name(call.caller));

	/*
	 * Asked before: the same answer, with no lock and no write.  Looked for
	 * again once the offer is locked, which a request with the same key
	 * held until it committed.
	 */
	waitlist_execute(&extension_read_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
	{
		lock_offer(resource_id, offer_id, &offer);
		waitlist_execute(&extension_read_plan, values, NULL, false, 0);
	}
	if (SPI_processed == 0)
	{
		Datum		extended_by = IntervalPGetDatum(offer.extended_by);
		Datum		max_extension = IntervalPGetDatum(offer.max_extension);

		if (strcmp(offer.state, "OPEN") != 0 || offer.past_deadline)
			offer_not_open(offer_id, &offer);
		if (DatumGetBool(DirectFunctionCall2(interval_gt,
											 DirectFunctionCall2(interval_pl, extended_by,
																 IntervalPGetDatum(by)),
											 max_extension)))
			ereport(ERROR,
					(errcode(ERRCODE_WAITLIST_EXTENSION_LIMIT),
					 errmsg("waitlist offer %lld cannot be extended by %s", (long long) offer_id,
							DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(by)))),
					 errdetail("Offers of resource \"%s\" may be extended by at most %s in all; this one has been extended by %s.",
							   text_to_cstring(resource_id),
							   DatumGetCString(DirectFunctionCall1(interval_out, max_extension)),
							   DatumGetCString(DirectFunctionCall1(interval_out, extended_by))),
					 errhint("Raise the resource's max_offer_extension with waitlist_alter_resource().")));
		waitlist_execute(&extension_insert_plan, values, NULL, false, 0);
		if (SPI_processed != 1)
			elog(ERROR, "extension of locked waitlist offer %lld conflicted", (long long) offer_id);
		deadline = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		change.detail = text_to_cstring(reason);
		change.interval = by;
		if (waitlist_settle_offer(WAITLIST_EVENT_EXTEND, resource_id, offer_id, &change) == 0)
			elog(ERROR, "waitlist offer %lld left OPEN while locked", (long long) offer_id);
	}
	else
		deadline = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	waitlist_api_end(&call);

	PG_RETURN_TIMESTAMPTZ(DatumGetTimestampTz(deadline));
}
