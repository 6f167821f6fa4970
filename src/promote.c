/*-------------------------------------------------------------------------
 *
 * promote.c
 *	  Capacity coming back and going out: recording CapacityReleased
 *	  events, the per-resource serialized promotion step that turns free
 *	  units into offers, and the settlement of offers, which follows each
 *	  unit where the state machine sends it.
 *
 * A unit an offer holds ends consumed (ACCEPTED), retired (FAILED: the
 * booking system said the seat is gone) or back in free_units (DECLINED,
 * EXPIRED, REVOKED), from where it is promoted to the next waiter in the
 * same transaction: waitlist_settle_offers() is the one way to settle, and
 * it promotes whatever the settlement returned.
 *
 * Lock order: the offer row, then the resource row, then entry rows; the
 * expiry sweep, which goes the other way, takes both with SKIP LOCKED.
 * Whatever gives a unit back then only tries the resource's gate
 * (promote_added_units()), and an accept only tries it shared once
 * its booking function has failed and the fan goes back in line, so that no
 * decline, release or join of the resource ever queues behind a booking
 * function (see waitlist_lock_resource_gate()).
 *
 * IDENTIFICATION
 *	  src/promote.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "engine.h"

static void promote_added_units(text *resource_id, WaitlistResource *locked);

/*
 * Record the event once per (resource, event id) and add its units.  No row
 * comes back for a repeated event.
 */
static WaitlistPlan release_plan = {
	"WITH event AS ("
	"  INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity, state, processed_at)"
	"  VALUES ($1, $2, $3, 'PROCESSED', pg_catalog.now())"
	"  ON CONFLICT (resource_id, event_id) DO NOTHING"
	"  RETURNING quantity"
	") UPDATE waitlist.resource r"
	"  SET free_units = r.free_units OPERATOR(pg_catalog.+) e.quantity,"
	"      units_released = r.units_released OPERATOR(pg_catalog.+) e.quantity,"
	"      updated_at = pg_catalog.now()"
	"  FROM event e WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
	"  RETURNING r.free_units",
	3, {TEXTOID, TEXTOID, INT4OID}
};

/* In worker mode a release only records the event, pending. */
static WaitlistPlan record_event_plan = {
	"INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity)"
	"  VALUES ($1, $2, $3)"
	"  ON CONFLICT (resource_id, event_id) DO NOTHING",
	3, {TEXTOID, TEXTOID, INT4OID}
};

/*
 * The worker folds all of a resource's due pending events into free_units
 * at once.  Returns the number of events folded and the free units then (no
 * row if none).
 */
static WaitlistPlan fold_events_plan = {
	"WITH folded AS ("
	"  UPDATE waitlist.capacity_event SET state = 'PROCESSED', processed_at = pg_catalog.now()"
	"  WHERE resource_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'PENDING'"
	"    AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
	"  RETURNING quantity"
	"), total AS ("
	"  SELECT pg_catalog.count(*) AS events, pg_catalog.sum(quantity) AS units FROM folded"
	") UPDATE waitlist.resource r"
	"  SET free_units = r.free_units OPERATOR(pg_catalog.+) t.units,"
	"      units_released = r.units_released OPERATOR(pg_catalog.+) t.units,"
	"      updated_at = pg_catalog.now()"
	"  FROM total t WHERE r.resource_id OPERATOR(pg_catalog.=) $1 AND t.events OPERATOR(pg_catalog.>) 0"
	"  RETURNING t.events, r.free_units",
	1, {TEXTOID}
};

/*
 * Resources with free units and people waiting, whose wave (if any) may go
 * on: a promotion that SKIP LOCKED cut short, a wave to continue.  All of
 * them ($1 < 0) or one worker's share ($1 of $2); at most $3.
 */
WaitlistPlan waitlist_idle_resources_plan = {
	"SELECT r.resource_id FROM waitlist.resource r"
	" WHERE r.free_units OPERATOR(pg_catalog.>) 0"
	"   AND ($1 OPERATOR(pg_catalog.<) 0"
	"        OR waitlist.resource_worker(r.resource_id, $2) OPERATOR(pg_catalog.=) $1)"
	"   AND (r.wave_size IS NULL OR r.wave_offers OPERATOR(pg_catalog.<) r.wave_size"
	"        OR " WAITLIST_WAVE_END_SQL " OPERATOR(pg_catalog.<=) pg_catalog.now())"
	"   AND EXISTS (SELECT 1 FROM waitlist.entry e"
	"               WHERE e.resource_id OPERATOR(pg_catalog.=) r.resource_id"
	"                 AND e.state OPERATOR(pg_catalog.=) 'WAITING')"
	" LIMIT $3",
	3, {INT4OID, INT4OID, INT4OID}, 0, true
};

/*
 * Promote the idle free units of up to max_resources resources in the
 * caller's transaction, passing over resources that another transaction
 * has locked.  For the sweep, which continues waves and picks up units
 * handed on by releases and declines (promote_added_units()) where
 * no worker runs.  It adds no units and takes no gate: a transaction that
 * joined and stays open (idle, prepared) must not keep the units it handed
 * on from the fans already in line.  A join in flight either saw the units
 * and promotes itself or is promoted by a later pass; a fan mid-leave is
 * passed over (SKIP LOCKED), as by a join that finds free units.  Returns
 * the number of offers made.
 */
int64
waitlist_promote_idle(int32 max_resources)
{
	Datum		args[3] = {Int32GetDatum(-1), Int32GetDatum(0), Int32GetDatum(max_resources)};
	SPITupleTable *idle;
	int64		offers = 0;
	uint64		i;

	waitlist_execute(&waitlist_idle_resources_plan, args, NULL, false, 0);
	idle = SPI_tuptable;
	for (i = 0; i < idle->numvals; i++)
	{
		text	   *resource_id = waitlist_spi_text(idle, i, 1);
		WaitlistResource res;

		if (!waitlist_try_lock_resource(resource_id, &res))
			continue;
		offers += waitlist_promote_locked(resource_id, -1, &res, NULL);
	}
	return offers;
}

/*
 * Offer the resource's free units to the next parties in line, in up to
 * max_offers offers (all, if negative).  The caller holds the resource's
 * lock; "locked" is what taking it read, or NULL if the caller has changed
 * the row since (the row is then read again).  Returns the number of offers
 * made; *units_spent (if not NULL) gets the units they hold.
 *
 * A strict line is taken in order while its parties fit: a party that does
 * not fit waits at the head, and nobody behind it is offered first.  With
 * skip_to_fit each pass offers the parties in line that fit what is left,
 * passing over those that do not; a party passed over keeps its place.
 */
int64
waitlist_promote_locked(text *resource_id, int64 max_offers,
						const WaitlistResource *locked, int64 *units_spent)
{
	WaitlistResource res;
	WaitlistPromotion promotion;
	int64		units_left;
	int64		offers_left;
	int64		offers = 0;

	if (units_spent != NULL)
		*units_spent = 0;
	if (locked != NULL)
		res = *locked;
	else
		waitlist_read_resource(resource_id, &res);
	/* past the offer cutoff the units go back to the booking system */
	if (res.closing)
	{
		if (res.free_units > 0)
			waitlist_apply_return_units(resource_id, res.free_units,
										"too little time is left before offers_close_at");
		return 0;
	}
	units_left = res.free_units;
	offers_left = max_offers >= 0 ? max_offers : PG_INT64_MAX;
	/* with waves, what is left of this wave's (or a new wave's) size */
	if (res.wave_budget >= 0)
		offers_left = Min(offers_left, res.wave_budget);

	promotion.new_wave = res.new_wave;
	promotion.fanout = Max(res.offer_fanout, 1);
	/* a fanned-out unit is offered to parties of one */
	promotion.max_quantity = promotion.fanout > 1 ? 1 : PG_INT32_MAX;
	promotion.passing_over = false;
	while (units_left > 0 && offers_left > 0)
	{
		int64		made;
		int64		spent;

		if (!res.strict_parties && promotion.fanout == 1)
		{
			promotion.max_quantity = (int32) Min(units_left, PG_INT32_MAX);
			promotion.passing_over = true;
		}
		promotion.units = units_left;
		promotion.max_offers = units_left > PG_INT64_MAX / promotion.fanout ? offers_left :
			Min(offers_left, units_left * promotion.fanout);
		made = waitlist_apply_promote(resource_id, &promotion, &spent);
		offers += made;
		units_left -= spent;
		offers_left -= made;
		if (units_spent != NULL)
			*units_spent += spent;
		/* later passes go on with the same wave */
		promotion.new_wave = false;
		if (made == 0 || !promotion.passing_over)
			break;
	}
	return offers;
}

/*
 * Record a CapacityReleased event once per (resource, event id), in the
 * caller's transaction and API frame.  Inline, its units are added and
 * promoted at once (or handed on, see promote_added_units()); in
 * worker mode, and under a transaction snapshot (REPEATABLE READ,
 * SERIALIZABLE: the booking system's own transaction, through the capacity
 * trigger), the event waits, pending, for the resource's worker, woken when
 * this transaction commits, or for the sweep, and no per-resource lock is
 * taken.  Returns false for a repeated event, and for an unknown resource
 * if missing_ok.
 */
bool
waitlist_release_units(text *resource_id, int32 quantity, text *event_id, bool missing_ok)
{
	Datum		values[3];
	WaitlistResource res;
	bool		isnull;

	values[0] = PointerGetDatum(resource_id);
	values[1] = PointerGetDatum(event_id);
	values[2] = Int32GetDatum(quantity);
	if (waitlist_defer_to_worker() || IsolationUsesXactSnapshot())
	{
		if (!waitlist_read_resource_ext(resource_id, &res, missing_ok))
			return false;
		waitlist_execute(&record_event_plan, values, NULL, false, 0);
		if (SPI_processed == 0)
			return false;
		waitlist_wake_owner_at_commit(resource_id);
		return true;
	}

	if (!waitlist_lock_resource_ext(resource_id, &res, missing_ok))
		return false;
	waitlist_execute(&release_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		return false;
	res.free_units = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	promote_added_units(resource_id, &res);
	return true;
}

/*
 * Units were just added to the resource's free_units (a release, a decline,
 * an expiry, a revocation; the caller holds the resource's lock): offer them
 * now if that passes nobody over, else hand them to the resource's worker,
 * woken at commit, or to the next sweep or join, which all look for free
 * units with people waiting.  "locked" is the resource's row as the caller
 * holds it, free_units included, or NULL to read it again.
 *
 * Offering now needs the gate exclusively, so that no join or leave is in
 * flight (a fan mid-leave would be passed over if the leave rolled back),
 * and statements that see every commit before them (READ COMMITTED).  The
 * gate is only tried: waiting for it would queue behind an idle or prepared
 * transaction, and every later join behind us.  If it is busy, its holder
 * is a join, leave or failed accept in flight (the units then wait for it
 * to commit and the next pass; a join arriving after our commit sees them
 * and promotes), or a promoter that has yet to lock the resource row and so
 * will see our units.  Once nothing is left free the gate is given back at
 * once: no later join can miss a unit then, and a transaction left open
 * after a release or a decline does not hold up the resource's joins.
 */
static void
promote_added_units(text *resource_id, WaitlistResource *locked)
{
	WaitlistResource res;

	if (waitlist_defer_to_worker() || IsolationUsesXactSnapshot() ||
		!waitlist_try_lock_resource_gate(resource_id))
	{
		waitlist_wake_owner_at_commit(resource_id);
		return;
	}
	if (locked != NULL)
		res = *locked;
	else
		waitlist_read_resource(resource_id, &res);
	{
		int64		spent;

		(void) waitlist_promote_locked(resource_id, -1, &res, &spent);
		if (spent >= res.free_units)
			waitlist_unlock_resource_gate(resource_id);
	}
}


/* resources whose pending events are due, for the sweep where no worker runs */
static WaitlistPlan pending_resources_plan = {
	"SELECT DISTINCT resource_id FROM waitlist.capacity_event"
	" WHERE state OPERATOR(pg_catalog.=) 'PENDING'"
	"   AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
	" LIMIT $1",
	1, {INT4OID}, 0, true
};

/*
 * Fold the resource's due pending events into free_units and promote them;
 * the caller holds the resource's row ("locked", as it read it) and its
 * gate.  Returns the number of events folded; *offers gets the number of
 * offers made.
 */
static int64
fold_and_promote_locked(text *resource_id, WaitlistResource *locked, int64 *offers)
{
	Datum		values[1] = {PointerGetDatum(resource_id)};
	int64		events = 0;
	bool		isnull;

	waitlist_execute(&fold_events_plan, values, NULL, false, 0);
	if (SPI_processed > 0)
	{
		events = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
		locked->free_units = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 2, &isnull));
	}
	*offers = waitlist_promote_locked(resource_id, -1, locked, NULL);
	return events;
}

/*
 * Fold the due pending events of up to max_resources resources and promote,
 * passing over resources whose row another transaction has locked or whose
 * gate is busy: for the sweep, which picks up the releases recorded under a
 * transaction snapshot (and those left behind by a switch from worker
 * mode).  The row comes first so that the sweep never holds a gate while
 * it waits for a row.  Returns the number of offers made.
 */
int64
waitlist_fold_pending(int32 max_resources)
{
	Datum		args[1] = {Int32GetDatum(max_resources)};
	SPITupleTable *pending;
	int64		offers = 0;
	uint64		i;

	waitlist_execute(&pending_resources_plan, args, NULL, false, 0);
	pending = SPI_tuptable;
	for (i = 0; i < pending->numvals; i++)
	{
		text	   *resource_id = waitlist_spi_text(pending, i, 1);
		WaitlistResource res;
		int64		made;

		if (!waitlist_try_lock_resource(resource_id, &res) ||
			!waitlist_try_lock_resource_gate(resource_id))
			continue;
		(void) fold_and_promote_locked(resource_id, &res, &made);
		offers += made;
	}
	return offers;
}

/*
 * Fold the resource's due pending events into free_units and promote; the
 * worker's unit of work for one resource.  Returns the number of events
 * folded; *offers gets the number of offers made.  Without wait_for_gate,
 * returns -1 at once if the resource's row is locked (a release left open)
 * or its gate is held (an accept whose booking function is slow, say): a
 * worker does not stall its whole share behind one busy resource.
 */
int64
waitlist_fold_and_promote(text *resource_id, int64 *offers, bool wait_for_gate)
{
	WaitlistResource res;

	*offers = 0;
	if (wait_for_gate)
	{
		waitlist_lock_resource_gate(resource_id, true);
		waitlist_lock_resource(resource_id, &res);
	}
	else
	{
		/*
		 * The row first, and only tried: holding the gate while waiting for
		 * the row (behind a release left open, say) would hold up every join
		 * of the resource for as long.  A resource gone is an error of the
		 * event, not a busy one.
		 */
		if (!waitlist_try_lock_resource(resource_id, &res))
		{
			waitlist_read_resource(resource_id, &res);
			return -1;
		}
		if (!waitlist_try_lock_resource_gate(resource_id))
			return -1;
	}
	return fold_and_promote_locked(resource_id, &res, offers);
}

/*
 * After a new WAITING entry appeared (a join, a fan put back in line), make
 * sure no free unit stays idle.  The caller holds the resource's gate
 * shared, so a unit added concurrently is either seen here or promoted by
 * the adder, its worker or the sweep after this transaction commits.  Under
 * a transaction snapshot what is read here may be stale: the worker or the
 * sweep, in a snapshot of their own, decide.
 */
void
waitlist_promote_if_free(text *resource_id)
{
	WaitlistResource res;

	if (IsolationUsesXactSnapshot())
	{
		waitlist_wake_owner_at_commit(resource_id);
		return;
	}
	waitlist_read_resource(resource_id, &res);
	/* a spent wave offers nothing: no need to queue on the resource row */
	if (res.free_units <= 0 || res.wave_budget == 0)
		return;
	if (waitlist_defer_to_worker())
	{
		waitlist_wake_owner_at_commit(resource_id);
		return;
	}
	waitlist_lock_resource(resource_id, &res);
	(void) waitlist_promote_locked(resource_id, -1, &res, NULL);
}

/*
 * A fan whose booking failed is back in line: like a join, look for free
 * units under the gate held shared.  The accept takes it only now, after
 * its booking function, so that nothing it holds meanwhile keeps a decline
 * or a release from promoting; and it only tries it, as it holds its
 * offer's row: the holder of the gate, an adder whose transaction goes on,
 * may come to wait for that row.  If the gate is busy the fan is handed to
 * the worker, the next join or the sweep, like the adder's units.
 */
static void
promote_after_failed_booking(text *resource_id)
{
	if (!waitlist_try_lock_resource_gate_shared(resource_id))
	{
		waitlist_wake_owner_at_commit(resource_id);
		return;
	}
	waitlist_promote_if_free(resource_id);
}

/*
 * The entry state a fan is put back in line in: the state a join creates.
 */
static bool
puts_back_in_line(const WaitlistRule *entry)
{
	return entry != NULL && strcmp(entry->to_state,
				  waitlist_find_rule(WAITLIST_ENTITY_ENTRY, WAITLIST_EVENT_JOIN)->to_state) == 0;
}

/*
 * Settle offers of a resource (an int8[] of ids) by an event and follow
 * their units as its rules say: units returned to free_units are promoted
 * (or handed on), and a fan put back in line looks for free units.  The
 * caller holds the offers and, if the event returns units, the resource's
 * row.  Offers not in the state the event moves from are left alone.
 * Returns how many were settled.  Every change of an offer goes through
 * here, those that settle nothing (a booking request, an extension)
 * included.
 */
int64
waitlist_settle_offers(WaitlistEvent event, text *resource_id, Datum offer_ids,
					   const WaitlistOfferChange *change)
{
	const WaitlistRule *offer = waitlist_find_rule(WAITLIST_ENTITY_OFFER, event);
	const WaitlistRule *entry = waitlist_find_rule(WAITLIST_ENTITY_ENTRY, event);
	int64		settled;

	settled = waitlist_apply_offer_event(event, resource_id, offer_ids, change);
	if (settled == 0)
		return 0;
	if (offer->unit == WAITLIST_UNIT_RETURN)
		promote_added_units(resource_id, NULL);
	else if (puts_back_in_line(entry))
		promote_after_failed_booking(resource_id);
	return settled;
}

/* The same for one offer. */
int64
waitlist_settle_offer(WaitlistEvent event, text *resource_id, int64 offer_id,
					  const WaitlistOfferChange *change)
{
	Datum		id = Int64GetDatum(offer_id);

	return waitlist_settle_offers(event, resource_id,
								  PointerGetDatum(construct_array(&id, 1, INT8OID, sizeof(int64),
																  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
								  change);
}

/*
 * Resources with rows of "table" in "state" past their "deadline" column,
 * earliest deadlines first; all of them ($2 < 0) or one worker's share.
 * Deadlines are compared with the transaction's start, which bounds the
 * scan of the deadline index (and never ends anything early).
 */
#define DUE_RESOURCES_SQL(table, state, deadline) \
	"SELECT DISTINCT resource_id FROM (" \
	"  SELECT resource_id FROM waitlist." table \
	"  WHERE state OPERATOR(pg_catalog.=) '" state "'" \
	"    AND " deadline " OPERATOR(pg_catalog.<=) pg_catalog.now()" \
	"    AND ($2 OPERATOR(pg_catalog.<) 0" \
	"         OR waitlist.resource_worker(resource_id, $3) OPERATOR(pg_catalog.=) $2)" \
	"  ORDER BY " deadline " LIMIT $1" \
	") due ORDER BY resource_id"

/* the due rows of one resource (their ids), at most $2, locked */
#define DUE_ROWS_SQL(table, id, state, deadline) \
	"SELECT pg_catalog.array_agg(" id ") FROM (" \
	"  SELECT " id " FROM waitlist." table \
	"  WHERE resource_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) '" state "'" \
	"    AND " deadline " OPERATOR(pg_catalog.<=) pg_catalog.now()" \
	"  ORDER BY " deadline " LIMIT $2" \
	"  FOR UPDATE SKIP LOCKED" \
	") due"

/*
 * What ends at a deadline: open offers, accept sagas (1.1), and places left
 * unconfirmed (1.1, entries: no unit is involved, so no resource is locked).
 */
typedef struct DeadlineKind
{
	WaitlistEntity entity;
	WaitlistEvent event;
	WaitlistPlan resources_plan;
	WaitlistPlan rows_plan;
} DeadlineKind;

static DeadlineKind offer_deadlines = {
	WAITLIST_ENTITY_OFFER, WAITLIST_EVENT_EXPIRE,
	{DUE_RESOURCES_SQL("offer", "OPEN", "expires_at"), 3, {INT8OID, INT4OID, INT4OID}, 0, true},
	{DUE_ROWS_SQL("offer", "offer_id", "OPEN", "expires_at"), 2, {TEXTOID, INT8OID}}
};

static DeadlineKind saga_deadlines = {
	WAITLIST_ENTITY_OFFER, WAITLIST_EVENT_BOOKING_EXHAUSTED,
	{DUE_RESOURCES_SQL("offer", "ACCEPTING", "booking_deadline"), 3, {INT8OID, INT4OID, INT4OID}, 0, true},
	{DUE_ROWS_SQL("offer", "offer_id", "ACCEPTING", "booking_deadline"), 2, {TEXTOID, INT8OID}}
};

static DeadlineKind place_deadlines = {
	WAITLIST_ENTITY_ENTRY, WAITLIST_EVENT_EXPIRE_UNCONFIRMED,
	{DUE_RESOURCES_SQL("entry", "PENDING", "confirm_by"), 3, {INT8OID, INT4OID, INT4OID}, 0, true},
	{DUE_ROWS_SQL("entry", "entry_id", "PENDING", "confirm_by"), 2, {TEXTOID, INT8OID}}
};

static WaitlistPlan open_offer_of_entry_plan = {
	"SELECT offer_id, state FROM waitlist.offer "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1 AND entry_id OPERATOR(pg_catalog.=) $2"
	"  AND state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING']) "
	"FOR UPDATE",
	2, {TEXTOID, INT8OID}
};

/*
 * Leave while offered: the offer is REVOKED, the entry CANCELLED and the
 * unit goes to the next waiter, in the caller's transaction.  Returns false
 * if the entry had no open offer any more once locked.  A fan whose
 * booking the booking service is making cannot leave: the seat may be
 * theirs already, and only the booking service can say.
 */
bool
waitlist_revoke_offer_of_entry(text *resource_id, int64 entry_id)
{
	WaitlistResource res;
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(entry_id)};
	bool		isnull;
	int64		offer_id;
	WaitlistOfferChange change = {.detail = "the fan left the waitlist"};

	waitlist_execute(&open_offer_of_entry_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		return false;
	offer_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2), "OPEN") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("waitlist entry %lld has a booking in progress", (long long) entry_id),
				 errdetail("Its offer %lld was accepted and the booking service is booking it.",
						   (long long) offer_id),
				 errhint("Cancel the booking with the booking service, or leave once the booking has failed.")));
	waitlist_lock_resource(resource_id, &res);
	return waitlist_settle_offer(WAITLIST_EVENT_REVOKE, resource_id, offer_id, &change) > 0;
}

/*
 * The offers of a fanned-out unit (1.1), the given one's included, locked
 * in offer order: accepts of two of them come one after the other, so the
 * second finds its offer revoked, and its fan's booking function never
 * runs.  Returns false, having locked nothing, for an offer of its own
 * units, or on a 1.0 schema.
 */
static WaitlistPlan lock_unit_offers_plan = {
	"SELECT o.offer_id FROM waitlist.offer o"
	" WHERE o.resource_id OPERATOR(pg_catalog.=) $1"
	"   AND o.unit_id OPERATOR(pg_catalog.=) (SELECT g.unit_id FROM waitlist.offer g"
	"                                          WHERE g.resource_id OPERATOR(pg_catalog.=) $1"
	"                                            AND g.offer_id OPERATOR(pg_catalog.=) $2)"
	" ORDER BY o.offer_id FOR UPDATE",
	2, {TEXTOID, INT8OID}
};

/* the other open offers of a unit the given offer has taken, as an int8[] */
static WaitlistPlan unit_rivals_plan = {
	"SELECT pg_catalog.array_agg(o.offer_id ORDER BY o.offer_id) FROM waitlist.offer o"
	" JOIN waitlist.offer g ON g.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"                      AND g.unit_id OPERATOR(pg_catalog.=) o.unit_id"
	" WHERE o.resource_id OPERATOR(pg_catalog.=) $1 AND g.offer_id OPERATOR(pg_catalog.=) $2"
	"   AND g.state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTING', 'ACCEPTED', 'FAILED'])"
	"   AND o.offer_id OPERATOR(pg_catalog.<>) $2 AND o.state OPERATOR(pg_catalog.=) 'OPEN'",
	2, {TEXTOID, INT8OID}
};

bool
waitlist_lock_unit_offers(text *resource_id, int64 offer_id)
{
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(offer_id)};

	if (!waitlist_schema_is_1_1())
		return false;
	waitlist_execute(&lock_unit_offers_plan, values, NULL, false, 0);
	return SPI_processed > 0;
}

/*
 * The given offer took its fanned-out unit (accepted, booking, or its
 * booking failed): the unit's other open offers are withdrawn (filled), and
 * their fans go back to their places in line.  The caller holds them all
 * (waitlist_lock_unit_offers()).  Returns how many were withdrawn.
 */
int64
waitlist_fill_unit(text *resource_id, int64 offer_id)
{
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(offer_id)};
	WaitlistOfferChange change = {.detail = "another fan took the unit"};
	bool		isnull;
	Datum		rivals;

	waitlist_execute(&unit_rivals_plan, values, NULL, false, 0);
	rivals = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return 0;
	return waitlist_settle_offers(WAITLIST_EVENT_FILL, resource_id, rivals, &change);
}

/*
 * End up to max_offers rows of a kind past their deadline; the units offers
 * give back are promoted (or handed on).  owner >= 0 limits it to that
 * worker's share of nworkers.  A resource whose row another transaction has
 * locked (another sweep, a release or decline not yet committed) is passed
 * over until next time, and offers are taken with SKIP LOCKED (an accept or
 * a booking report in flight holds its offer), so concurrent sweeps never
 * wait for one another nor end an offer twice, and a transaction left open
 * on one resource holds up no other.  The gate is not needed: a joiner in
 * flight only delays the promotion of the units given back.  Runs in the
 * caller's API frame.
 */
static int64
end_due(DeadlineKind *kind, int64 max_offers, int owner, int nworkers)
{
	int64		budget = max_offers;
	int64		ended = 0;
	Datum		args[3] = {Int64GetDatum(max_offers), Int32GetDatum(owner), Int32GetDatum(nworkers)};
	WaitlistOfferChange change = {0};
	SPITupleTable *due;
	uint64		i;

	waitlist_execute(&kind->resources_plan, args, NULL, false, 0);
	due = SPI_tuptable;
	for (i = 0; i < due->numvals && budget > 0; i++)
	{
		bool		isnull;
		text	   *resource_id = waitlist_spi_text(due, i, 1);
		Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(budget)};
		WaitlistResource res;
		Datum		ids;
		int64		n;

		if (kind->entity == WAITLIST_ENTITY_OFFER &&
			!waitlist_try_lock_resource(resource_id, &res))
			continue;
		waitlist_execute(&kind->rows_plan, values, NULL, false, 0);
		ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			continue;
		n = kind->entity == WAITLIST_ENTITY_OFFER ?
			waitlist_settle_offers(kind->event, resource_id, ids, &change) :
			waitlist_apply_entry_event(kind->event, resource_id, ids);
		ended += n;
		budget -= n;
	}
	return ended;
}

/* Expire open offers past their expires_at. */
int64
waitlist_expire_due(int64 max_offers, int owner, int nworkers)
{
	return end_due(&offer_deadlines, max_offers, owner, nworkers);
}

/*
 * End the accept sagas past their booking deadline (EXPIRED, the unit to the
 * next fan); nothing on a 1.0 schema, which has none.
 */
int64
waitlist_end_due_sagas(int64 max_offers, int owner, int nworkers)
{
	if (!waitlist_schema_is_1_1())
		return 0;
	return end_due(&saga_deadlines, max_offers, owner, nworkers);
}

/*
 * Let up to max_entries unconfirmed places past their confirm_by go
 * (EXPIRED, not_confirmed); nothing on a 1.0 schema.
 */
int64
waitlist_end_due_places(int64 max_entries, int owner, int nworkers)
{
	if (!waitlist_schema_is_1_1())
		return 0;
	return end_due(&place_deadlines, max_entries, owner, nworkers);
}

/* resources whose offers_close_at has passed and that are not closed yet */
static WaitlistPlan closing_resources_plan = {
	"SELECT resource_id FROM waitlist.resource"
	" WHERE offers_close_at OPERATOR(pg_catalog.<=) pg_catalog.now() AND closed_at IS NULL"
	"   AND ($1 OPERATOR(pg_catalog.<) 0"
	"        OR waitlist.resource_worker(resource_id, $2) OPERATOR(pg_catalog.=) $1)"
	" ORDER BY offers_close_at LIMIT $3",
	3, {INT4OID, INT4OID, INT4OID}, 0, true
};

/* the entries a resource's closing ends, of one state */
static WaitlistPlan line_of_state_plan = {
	"SELECT pg_catalog.array_agg(entry_id ORDER BY entry_id) FROM waitlist.entry"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, TEXTOID}
};

static WaitlistPlan mark_closed_plan = {
	"UPDATE waitlist.resource SET closed_at = pg_catalog.now(), updated_at = pg_catalog.now()"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/* End the entries of one state on a resource by an event; how many. */
static int64
end_line(text *resource_id, WaitlistEvent event)
{
	Datum		values[2];
	Datum		ids;
	bool		isnull;

	values[0] = PointerGetDatum(resource_id);
	values[1] = CStringGetTextDatum(waitlist_find_rule(WAITLIST_ENTITY_ENTRY, event)->from_state);
	waitlist_execute(&line_of_state_plan, values, NULL, false, 0);
	ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : waitlist_apply_entry_event(event, resource_id, ids);
}

/*
 * Close the lines of up to max_resources resources whose offers_close_at
 * has passed (owner >= 0: that worker's share): every fan still waiting,
 * or holding an unconfirmed place, is told (waitlist_closed) once and their
 * entry ends EXPIRED, closed; free units go back to the booking system.
 * Offers still open end at their deadline, clipped to the cutoff, and their
 * units go back then.  A resource another transaction holds is passed over
 * until next time.  Nothing on a 1.0 schema.  Returns the resources closed.
 */
int64
waitlist_close_due(int32 max_resources, int owner, int nworkers)
{
	Datum		args[3] = {Int32GetDatum(owner), Int32GetDatum(nworkers), Int32GetDatum(max_resources)};
	SPITupleTable *due;
	int64		closed = 0;
	uint64		i;

	if (!waitlist_schema_is_1_1())
		return 0;
	waitlist_execute(&closing_resources_plan, args, NULL, false, 0);
	due = SPI_tuptable;
	for (i = 0; i < due->numvals; i++)
	{
		text	   *resource_id = waitlist_spi_text(due, i, 1);
		Datum		values[1] = {PointerGetDatum(resource_id)};
		WaitlistResource res;

		/* the gate too: no join or confirmation may slip in as it closes */
		if (!waitlist_try_lock_resource(resource_id, &res) ||
			!waitlist_try_lock_resource_gate(resource_id))
			continue;
		(void) end_line(resource_id, WAITLIST_EVENT_CLOSE);
		(void) end_line(resource_id, WAITLIST_EVENT_CLOSE_UNCONFIRMED);
		if (res.free_units > 0)
			waitlist_apply_return_units(resource_id, res.free_units, "the waitlist closed");
		waitlist_execute(&mark_closed_plan, values, NULL, false, 0);
		closed++;
	}
	return closed;
}
