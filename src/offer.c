/*-------------------------------------------------------------------------
 *
 * offer.c
 *	  The end of an offer: accept, decline, expiry and revocation, each of
 *	  which settles the offered unit of capacity exactly once.
 *
 * A unit held by an OPEN offer ends consumed (ACCEPTED), retired (FAILED:
 * the booking system said the seat is gone) or back in free_units
 * (DECLINED, EXPIRED, REVOKED), from where it is promoted to the next waiter
 * in the same transaction.
 *
 * Lock order: the offer row, then the resource row, then entry rows; the
 * expiry sweep, which goes the other way, takes both with SKIP LOCKED.
 * Whatever gives a unit back then only tries the resource's gate
 * (waitlist_promote_added_units()), and an accept only tries it shared once
 * its booking function has failed and the fan goes back in line, so that no
 * decline, release or join of the resource ever queues behind a booking
 * function (see waitlist_lock_resource_gate()).
 *
 * IDENTIFICATION
 *	  src/offer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "waitlist.h"

PG_FUNCTION_INFO_V1(waitlist_accept);
PG_FUNCTION_INFO_V1(waitlist_decline);
PG_FUNCTION_INFO_V1(waitlist_sweep);

/*
 * Settle open offers of one resource: the offers move to $3, their entries
 * to $4, and each gets an outbox row of type $5.  Offers that are no longer
 * OPEN are left alone.  Returns the number of offers settled.
 */
static WaitlistPlan settle_plan = {
	"WITH settled AS ("
	"  UPDATE waitlist.offer o"
	"  SET state = $3, decided_at = pg_catalog.now(),"
	"      reservation_ref = $6, idempotency_key = $7"
	"  WHERE o.resource_id OPERATOR(pg_catalog.=) $1"
	"    AND o.offer_id OPERATOR(pg_catalog.=) ANY ($2)"
	"    AND o.state OPERATOR(pg_catalog.=) 'OPEN'"
	"  RETURNING o.offer_id, o.entry_id, o.user_id, o.expires_at"
	"), moved AS ("
	/* ids as an array: an index lookup whatever the row estimates say */
	"  UPDATE waitlist.entry e SET state = $4, updated_at = pg_catalog.now()"
	"  WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
	"    AND e.state OPERATOR(pg_catalog.=) 'OFFERED'"
	"    AND e.entry_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT s.entry_id FROM settled s))"
	"), notified AS ("
	"  INSERT INTO waitlist.outbox (resource_id, entry_id, offer_id, user_id, channel, event_type, payload)"
	"  SELECT $1, s.entry_id, s.offer_id, s.user_id, ch.channel, $5,"
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
	"             'resource_id', $1, 'entry_id', s.entry_id, 'offer_id', s.offer_id,"
	"             'user_id', s.user_id, 'expires_at', s.expires_at,"
	"             'reservation_ref', $6, 'detail', $8))"
	"  FROM settled s"
	"    CROSS JOIN waitlist.resource r"
	"    CROSS JOIN LATERAL pg_catalog.unnest(r.channels) AS ch(channel)"
	"  WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
	"  ORDER BY s.offer_id, ch.channel"
	") SELECT pg_catalog.count(*) FROM settled",
	8, {TEXTOID, INT8ARRAYOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}, WAITLIST_CUSTOM_PLAN
};

static WaitlistPlan offer_resource_plan = {
	"SELECT resource_id FROM waitlist.offer WHERE offer_id OPERATOR(pg_catalog.=) $1",
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

static WaitlistPlan open_offer_of_entry_plan = {
	"SELECT offer_id FROM waitlist.offer "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1 AND entry_id OPERATOR(pg_catalog.=) $2"
	"  AND state OPERATOR(pg_catalog.=) 'OPEN' "
	"FOR UPDATE",
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

/*
 * Resources with offers past their deadline, earliest deadlines first; all
 * of them ($2 < 0) or one worker's share.  Deadlines are compared with the
 * transaction's start, which bounds the scan of the deadline index (and
 * never expires an offer early).
 */
static WaitlistPlan due_resources_plan = {
	"SELECT DISTINCT resource_id FROM ("
	"  SELECT resource_id FROM waitlist.offer"
	"  WHERE state OPERATOR(pg_catalog.=) 'OPEN' AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
	"    AND ($2 OPERATOR(pg_catalog.<) 0"
	"         OR waitlist.resource_worker(resource_id, $3) OPERATOR(pg_catalog.=) $2)"
	"  ORDER BY expires_at LIMIT $1"
	") due ORDER BY resource_id",
	3, {INT8OID, INT4OID, INT4OID}
};

static WaitlistPlan due_offers_plan = {
	"SELECT pg_catalog.array_agg(offer_id) FROM ("
	"  SELECT offer_id FROM waitlist.offer"
	"  WHERE resource_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'OPEN'"
	"    AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
	"  ORDER BY expires_at LIMIT $2"
	"  FOR UPDATE SKIP LOCKED"
	") due",
	2, {TEXTOID, INT8OID}
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

/*
 * Settle the given open offers of a resource (see settle_plan).  "reason" is
 * what their transition rows record.  Returns how many were settled.
 */
static int64
settle_offers(text *resource_id, Datum offer_ids, const char *offer_state,
			  const char *entry_state, const char *event_type,
			  const char *reservation_ref, text *idempotency_key,
			  const char *detail, const char *reason)
{
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		settled;

	values[0] = PointerGetDatum(resource_id);
	values[1] = offer_ids;
	values[2] = CStringGetTextDatum(offer_state);
	values[3] = CStringGetTextDatum(entry_state);
	values[4] = CStringGetTextDatum(event_type);
	values[5] = text_or_null(reservation_ref, &nulls[5]);
	values[6] = PointerGetDatum(idempotency_key);
	nulls[6] = idempotency_key == NULL ? 'n' : ' ';
	values[7] = text_or_null(detail, &nulls[7]);

	waitlist_execute(&settle_plan, values, nulls, false, 0, reason);
	settled = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	if (settled > 0)
		waitlist_outbox_written();
	return settled;
}

static Datum
one_offer_id(int64 offer_id)
{
	Datum		id = Int64GetDatum(offer_id);

	return PointerGetDatum(construct_array(&id, 1, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static void
offer_not_found(int64 offer_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("waitlist offer %lld does not exist", (long long) offer_id)));
}

/* The resource an offer belongs to; errors if there is no such offer. */
static text *
offer_resource(int64 offer_id)
{
	Datum		values[1] = {Int64GetDatum(offer_id)};

	waitlist_execute(&offer_resource_plan, values, NULL, false, 0, NULL);
	if (SPI_processed == 0)
		offer_not_found(offer_id);
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

	waitlist_execute(&lock_offer_plan, values, NULL, false, 0, NULL);
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
	if (strcmp(offer.state, "ACCEPTED") == 0)
	{
		/* accepted under another key: the one reservation there is */
		outcome = "ACCEPTED";
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
		outcome = "FAILED";
		if (settle_offers(resource_id, one_offer_id(offer_id), "FAILED", "WAITING",
						  "offer_failed", NULL, idempotency_key,
						  conflict_message, "booking conflict") == 0)
			offer_settled_under_accept(resource_id, offer_id);
		waitlist_promote_after_failed_booking(resource_id);
	}
	else
	{
		outcome = "ACCEPTED";
		if (settle_offers(resource_id, one_offer_id(offer_id), "ACCEPTED", "ACCEPTED",
						  "offer_accepted", *reservation_ref, idempotency_key,
						  OidIsValid(offer.booking_function) ? "booked" : "booking requested",
						  "accepted") == 0)
			offer_settled_under_accept(resource_id, offer_id);
	}

	request[0] = PointerGetDatum(resource_id);
	request[1] = Int64GetDatum(offer_id);
	request[2] = PointerGetDatum(idempotency_key);
	request[3] = CStringGetTextDatum(outcome);
	request[4] = text_or_null(*reservation_ref, &request_nulls[4]);
	waitlist_execute(&request_record_plan, request, request_nulls, false, 0, NULL);
	return outcome;
}

/*
 * waitlist_accept(offer_id bigint, idempotency_key text, OUT state text,
 * OUT reservation_ref text) RETURNS record
 *
 * Idempotent per key: the accept_request primary key makes a repeated key
 * wait for the first request and return its outcome, so the booking
 * function runs at most once per successful accept.  A different key on an
 * accepted offer returns the existing reservation.
 */
Datum
waitlist_accept(PG_FUNCTION_ARGS)
{
	int64		offer_id;
	text	   *idempotency_key = NULL;
	text	   *resource_id;
	const char *outcome;
	char	   *reservation_ref = NULL;
	TupleDesc	tupdesc;
	Datum		result[2];
	bool		result_nulls[2];
	Datum		request[3];
	HeapTupleHeader rettuple;
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	offer_id = PG_GETARG_INT64(0);
	idempotency_key = waitlist_id_arg(fcinfo, 1, "idempotency_key");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	waitlist_api_begin(&call);

	/* a key answered before: its outcome, with no lock and no write */
	request[0] = Int64GetDatum(offer_id);
	request[1] = PointerGetDatum(idempotency_key);
	waitlist_execute(&offer_and_request_plan, request, NULL, false, 0, NULL);
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
		waitlist_execute(&request_insert_plan, request, NULL, false, 0, NULL);
		if (SPI_processed == 0)
		{
			/* this key was answered before: same answer, no second booking */
			waitlist_execute(&request_read_plan, request, NULL, false, 0, NULL);
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

	PG_RETURN_DATUM(HeapTupleHeaderGetDatum(rettuple));
}

/*
 * waitlist_decline(offer_id bigint) RETURNS boolean
 *
 * OPEN -> DECLINED, the entry ends DECLINED and the unit goes to the next
 * waiter.  A repeated decline returns false.
 */
Datum
waitlist_decline(PG_FUNCTION_ARGS)
{
	int64		offer_id;
	text	   *resource_id;
	LockedOffer offer;
	WaitlistResource res;
	WaitlistApiCall call;
	bool		declined = false;

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	offer_id = PG_GETARG_INT64(0);

	waitlist_api_begin(&call);
	resource_id = offer_resource(offer_id);
	lock_offer(resource_id, offer_id, &offer);
	if (strcmp(offer.state, "DECLINED") != 0)
	{
		if (strcmp(offer.state, "OPEN") != 0 || offer.past_deadline)
			offer_not_open(offer_id, &offer);
		waitlist_lock_resource(resource_id, &res);
		settle_offers(resource_id, one_offer_id(offer_id), "DECLINED", "DECLINED",
					  "offer_declined", NULL, NULL, NULL, "declined");
		waitlist_give_back_units(resource_id, 1);
		declined = true;
	}
	waitlist_api_end(&call);

	PG_RETURN_BOOL(declined);
}

/*
 * Leave while offered: the offer is REVOKED, the entry CANCELLED and the
 * unit goes to the next waiter, in the caller's transaction.  Returns false
 * if the entry had no open offer any more once locked.
 */
bool
waitlist_revoke_offer_of_entry(text *resource_id, int64 entry_id)
{
	WaitlistResource res;
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(entry_id)};
	bool		isnull;
	int64		offer_id;

	waitlist_execute(&open_offer_of_entry_plan, values, NULL, false, 0, NULL);
	if (SPI_processed == 0)
		return false;
	offer_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	waitlist_lock_resource(resource_id, &res);
	if (settle_offers(resource_id, one_offer_id(offer_id), "REVOKED", "CANCELLED",
					  "offer_revoked", NULL, NULL, "the fan left the waitlist",
					  "left while offered") == 0)
		return false;
	waitlist_give_back_units(resource_id, 1);
	return true;
}

/*
 * Expire up to max_offers open offers past their deadline, give their units
 * back and promote (or hand them on).  owner >= 0 limits it to that
 * worker's share of nworkers.  A resource whose row another transaction has
 * locked (another sweep, a release or decline not yet committed) is passed
 * over until next time, and offers are taken with SKIP LOCKED (an accept in
 * flight holds its offer), so concurrent sweeps never wait for one another
 * nor expire an offer twice, and a transaction left open on one resource
 * holds up no other.  The gate is not needed to expire: a joiner in flight
 * only delays the promotion of the units given back.  Runs in the caller's
 * API frame.
 */
int64
waitlist_expire_due(int64 max_offers, int owner, int nworkers)
{
	int64		budget = max_offers;
	int64		expired = 0;
	Datum		args[3] = {Int64GetDatum(max_offers), Int32GetDatum(owner), Int32GetDatum(nworkers)};
	SPITupleTable *due;
	uint64		i;

	waitlist_execute(&due_resources_plan, args, NULL, false, 0, NULL);
	due = SPI_tuptable;
	for (i = 0; i < due->numvals && budget > 0; i++)
	{
		bool		isnull;
		text	   *resource_id = waitlist_spi_text(due, i, 1);
		Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(budget)};
		WaitlistResource res;
		Datum		offer_ids;
		int64		n;

		if (!waitlist_try_lock_resource(resource_id, &res))
			continue;
		waitlist_execute(&due_offers_plan, values, NULL, false, 0, NULL);
		offer_ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			continue;
		n = settle_offers(resource_id, offer_ids, "EXPIRED", "EXPIRED", "offer_expired",
						  NULL, NULL, NULL, "expired");
		if (n > 0)
			waitlist_give_back_units(resource_id, n);
		expired += n;
		budget -= n;
	}
	return expired;
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

	waitlist_require_read_committed("waitlist_sweep()");
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
