/*-------------------------------------------------------------------------
 *
 * promote.c
 *	  Capacity coming back and going out: recording CapacityReleased events
 *	  and the per-resource serialized promotion step that turns free units
 *	  into offers.
 *
 * IDENTIFICATION
 *	  src/promote.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "waitlist.h"

PG_FUNCTION_INFO_V1(waitlist_release);
PG_FUNCTION_INFO_V1(waitlist_promote);
PG_FUNCTION_INFO_V1(waitlist_retry_event);

/*
 * The promotion step as one set-based statement: pick the next $2 waiters in
 * line, move them to OFFERED, make one OPEN offer each with its outbox row,
 * and take the units from free_units.  The statement triggers on entry and
 * offer write the transition rows.  SKIP LOCKED passes over an entry that a
 * concurrent leave holds; the LIMIT then reaches one further down the line.
 */
static WaitlistPlan promote_plan = {
	"WITH picked AS ("
	"  SELECT e.entry_id FROM waitlist.entry e"
	"  WHERE e.resource_id OPERATOR(pg_catalog.=) $1 AND e.state OPERATOR(pg_catalog.=) 'WAITING'"
	"  ORDER BY e.priority DESC, e.seq"
	"  LIMIT $2"
	"  FOR UPDATE OF e SKIP LOCKED"
	"), moved AS ("
	/* ids as an array: an index lookup whatever the row estimates say */
	"  UPDATE waitlist.entry e SET state = 'OFFERED', updated_at = pg_catalog.now()"
	"  WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
	"    AND e.entry_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT p.entry_id FROM picked p))"
	"  RETURNING e.entry_id, e.user_id, e.priority, e.seq"
	"), made AS ("
	"  INSERT INTO waitlist.offer (entry_id, resource_id, user_id, expires_at)"
	/* clamped as the setting is bounded: no stored offer_ttl can overflow */
	"  SELECT m.entry_id, $1, m.user_id,"
	"         pg_catalog.now() OPERATOR(pg_catalog.+) LEAST(r.offer_ttl,"
	"                                        interval '" WAITLIST_MAX_SETTING_INTERVAL "')"
	"  FROM moved m, waitlist.resource r"
	"  WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
	"  ORDER BY m.priority DESC, m.seq"
	"  RETURNING offer_id, entry_id, user_id, expires_at"
	"), notified AS ("
	"  INSERT INTO waitlist.outbox (resource_id, entry_id, offer_id, user_id, channel, event_type, payload)"
	"  SELECT $1, o.entry_id, o.offer_id, o.user_id, ch.channel, 'offer_created',"
	"         pg_catalog.jsonb_build_object('resource_id', $1, 'entry_id', o.entry_id,"
	"             'offer_id', o.offer_id, 'user_id', o.user_id, 'expires_at', o.expires_at)"
	"  FROM made o"
	"    CROSS JOIN waitlist.resource r"
	"    CROSS JOIN LATERAL pg_catalog.unnest(r.channels) AS ch(channel)"
	"  WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
	"  ORDER BY o.offer_id, ch.channel"
	"), counted AS ("
	"  SELECT pg_catalog.count(*) AS offers FROM made"
	"), spent AS ("
	"  UPDATE waitlist.resource r"
	"  SET free_units = r.free_units OPERATOR(pg_catalog.-) c.offers, updated_at = pg_catalog.now(),"
	"      wave_started_at = CASE WHEN $3 THEN pg_catalog.now() ELSE r.wave_started_at END,"
	"      wave_offers = CASE WHEN $3 THEN c.offers ELSE r.wave_offers OPERATOR(pg_catalog.+) c.offers END"
	"  FROM counted c WHERE r.resource_id OPERATOR(pg_catalog.=) $1 AND c.offers OPERATOR(pg_catalog.>) 0"
	") SELECT offers FROM counted",
	3, {TEXTOID, INT8OID, BOOLOID}, WAITLIST_CUSTOM_PLAN
};

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
	"  FROM event e WHERE r.resource_id OPERATOR(pg_catalog.=) $1",
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
 * at once.  Returns the number of events folded (no row if none).
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
	"  RETURNING t.events",
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
	3, {INT4OID, INT4OID, INT4OID}
};

/*
 * Promote the idle free units of up to max_resources resources in the
 * caller's transaction, passing over resources that another transaction
 * has locked.  For the sweep, which continues waves and picks up units
 * handed on by releases and declines (waitlist_promote_added_units()) where
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

	waitlist_execute(&waitlist_idle_resources_plan, args, NULL, false, 0, NULL);
	idle = SPI_tuptable;
	for (i = 0; i < idle->numvals; i++)
	{
		text	   *resource_id = waitlist_spi_text(idle, i, 1);
		WaitlistResource res;

		if (!waitlist_try_lock_resource(resource_id, &res))
			continue;
		offers += waitlist_promote_locked(resource_id, -1, &res);
	}
	return offers;
}

/*
 * Offer up to max_offers (all, if negative) of the resource's free units to
 * the next waiters.  The caller holds the resource's lock; "locked" is what
 * taking it read, or NULL if the caller has changed the row since (the row
 * is then read again).  Returns the number of offers made.
 */
int64
waitlist_promote_locked(text *resource_id, int64 max_offers,
						const WaitlistResource *locked)
{
	WaitlistResource res;
	int64		wanted;
	int64		offers;
	Datum		values[3];
	bool		isnull;

	if (locked != NULL)
		res = *locked;
	else
		waitlist_read_resource(resource_id, &res);
	wanted = res.free_units;
	if (max_offers >= 0 && max_offers < wanted)
		wanted = max_offers;
	/* with waves, what is left of this wave's (or a new wave's) size */
	if (res.wave_budget >= 0 && res.wave_budget < wanted)
		wanted = res.wave_budget;
	if (wanted <= 0)
		return 0;

	values[0] = PointerGetDatum(resource_id);
	values[1] = Int64GetDatum(wanted);
	values[2] = BoolGetDatum(res.new_wave);
	waitlist_execute(&promote_plan, values, NULL, false, 0, "promoted");
	if (SPI_processed != 1)
		elog(ERROR, "promotion returned %llu rows", (unsigned long long) SPI_processed);
	offers = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	if (offers > 0)
		waitlist_outbox_written();
	return offers;
}

/*
 * waitlist_promote(resource_id text, max_offers integer) RETURNS integer
 *
 * The promotion step on its own, for callers that drive promotion
 * themselves.  Two sessions promoting one resource queue on its lock, so
 * together they never make more offers than there are free units.  It
 * takes the gate exclusively, so that no join or leave committing meanwhile
 * is passed over: unlike everything else that promotes, it waits for it, as
 * callers expect it to promote now (see docs/concurrency.md, "What a long
 * transaction blocks").
 */
Datum
waitlist_promote(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	int64		max_offers = -1;
	int64		offers;
	WaitlistResource res;
	WaitlistApiCall call;

	if (!PG_ARGISNULL(1))
	{
		max_offers = PG_GETARG_INT32(1);
		if (max_offers < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_offers must not be negative"),
					 errhint("Pass NULL to offer every free unit.")));
	}

	waitlist_require_read_committed("waitlist_promote()");
	waitlist_api_begin(&call);
	waitlist_lock_resource_gate(resource_id, true);
	waitlist_lock_resource(resource_id, &res);
	offers = waitlist_promote_locked(resource_id, max_offers, &res);
	waitlist_api_end(&call);

	PG_RETURN_INT32((int32) offers);
}

/*
 * Record a CapacityReleased event once per (resource, event id), in the
 * caller's transaction and API frame.  Inline, its units are added and
 * promoted at once (or handed on, see waitlist_promote_added_units()); in
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

	if (!waitlist_read_resource_ext(resource_id, &res, missing_ok))
		return false;

	values[0] = PointerGetDatum(resource_id);
	values[1] = PointerGetDatum(event_id);
	values[2] = Int32GetDatum(quantity);
	if (waitlist_defer_to_worker() || IsolationUsesXactSnapshot())
	{
		waitlist_execute(&record_event_plan, values, NULL, false, 0, NULL);
		if (SPI_processed == 0)
			return false;
		waitlist_wake_owner_at_commit(resource_id);
		return true;
	}

	waitlist_lock_resource(resource_id, &res);
	waitlist_execute(&release_plan, values, NULL, false, 0, NULL);
	if (SPI_processed == 0)
		return false;
	waitlist_promote_added_units(resource_id);
	return true;
}

/*
 * Units were just added to the resource's free_units (a release, a decline,
 * an expiry, a revocation; the caller holds the resource's lock): offer them
 * now if that passes nobody over, else hand them to the resource's worker,
 * woken at commit, or to the next sweep or join, which all look for free
 * units with people waiting.
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
void
waitlist_promote_added_units(text *resource_id)
{
	WaitlistResource res;

	if (waitlist_defer_to_worker() || IsolationUsesXactSnapshot() ||
		!waitlist_try_lock_resource_gate(resource_id))
	{
		waitlist_wake_owner_at_commit(resource_id);
		return;
	}
	waitlist_read_resource(resource_id, &res);
	if (waitlist_promote_locked(resource_id, -1, &res) >= res.free_units)
		waitlist_unlock_resource_gate(resource_id);
}

/* resources whose pending events are due, for the sweep where no worker runs */
static WaitlistPlan pending_resources_plan = {
	"SELECT DISTINCT resource_id FROM waitlist.capacity_event"
	" WHERE state OPERATOR(pg_catalog.=) 'PENDING'"
	"   AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
	" LIMIT $1",
	1, {INT4OID}
};

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

	waitlist_execute(&pending_resources_plan, args, NULL, false, 0, NULL);
	pending = SPI_tuptable;
	for (i = 0; i < pending->numvals; i++)
	{
		text	   *resource_id = waitlist_spi_text(pending, i, 1);
		WaitlistResource res;
		int64		made;

		if (!waitlist_try_lock_resource(resource_id, &res))
			continue;
		if (waitlist_fold_and_promote(resource_id, &made, false) >= 0)
			offers += made;
	}
	return offers;
}

/*
 * Fold the resource's due pending events into free_units and promote; the
 * worker's unit of work for one resource.  Returns the number of events
 * folded; *offers gets the number of offers made.  Without wait_for_gate,
 * returns -1 at once if the resource's gate is held (an accept whose booking
 * function is slow, say): a worker does not stall its whole share behind
 * one busy resource.
 */
int64
waitlist_fold_and_promote(text *resource_id, int64 *offers, bool wait_for_gate)
{
	Datum		values[1] = {PointerGetDatum(resource_id)};
	WaitlistResource res;
	int64		events = 0;
	bool		isnull;

	*offers = 0;
	if (wait_for_gate)
		waitlist_lock_resource_gate(resource_id, true);
	else if (!waitlist_try_lock_resource_gate(resource_id))
		return -1;
	waitlist_lock_resource(resource_id, &res);
	waitlist_execute(&fold_events_plan, values, NULL, false, 0, NULL);
	if (SPI_processed > 0)
		events = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	*offers = waitlist_promote_locked(resource_id, -1, NULL);
	return events;
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
	(void) waitlist_promote_locked(resource_id, -1, &res);
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
void
waitlist_promote_after_failed_booking(text *resource_id)
{
	if (!waitlist_try_lock_resource_gate_shared(resource_id))
	{
		waitlist_wake_owner_at_commit(resource_id);
		return;
	}
	waitlist_promote_if_free(resource_id);
}

void
waitlist_check_release_quantity(int64 quantity)
{
	if (quantity <= 0 || quantity > WAITLIST_MAX_RELEASE_QUANTITY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quantity " INT64_FORMAT " is out of range", quantity),
				 errdetail("A release must return between 1 and %d units.",
						   WAITLIST_MAX_RELEASE_QUANTITY)));
}

/*
 * waitlist_release(resource_id text, quantity integer, event_id text)
 * RETURNS boolean
 *
 * Records a CapacityReleased event, adds its units and promotes, all in the
 * caller's transaction.  A repeated event id returns false and changes
 * nothing, so a booking system may deliver its events at least once.
 */
Datum
waitlist_release(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	text	   *event_id = waitlist_id_arg(fcinfo, 2, "event_id");
	WaitlistApiCall call;
	bool		recorded;

	waitlist_check_not_null(fcinfo, 1, "quantity");
	waitlist_check_release_quantity(PG_GETARG_INT32(1));

	waitlist_api_begin(&call);
	recorded = waitlist_release_units(resource_id, PG_GETARG_INT32(1), event_id, false);
	waitlist_api_end(&call);

	PG_RETURN_BOOL(recorded);
}

static WaitlistPlan revive_events_plan = {
	"UPDATE waitlist.capacity_event"
	"  SET state = 'PENDING', attempts = 0, last_error = NULL, next_attempt_at = pg_catalog.now()"
	" WHERE event_id OPERATOR(pg_catalog.=) $1"
	"   AND ($2::pg_catalog.text IS NULL OR resource_id OPERATOR(pg_catalog.=) $2)"
	"   AND state OPERATOR(pg_catalog.=) 'DEAD'"
	" RETURNING resource_id",
	2, {TEXTOID, TEXTOID}
};

static WaitlistPlan event_exists_plan = {
	"SELECT 1 FROM waitlist.capacity_event"
	" WHERE event_id OPERATOR(pg_catalog.=) $1"
	"   AND ($2::pg_catalog.text IS NULL OR resource_id OPERATOR(pg_catalog.=) $2)",
	2, {TEXTOID, TEXTOID}
};

/*
 * waitlist_retry_event(event_id text, resource_id text) RETURNS integer
 *
 * Puts a DEAD capacity event back to PENDING with fresh attempts; the
 * resource's worker takes it after this transaction commits (or, without
 * preloaded workers, it is promoted here).  Returns the number revived: an
 * event that is not dead is left alone.
 */
Datum
waitlist_retry_event(PG_FUNCTION_ARGS)
{
	text	   *event_id = waitlist_id_arg(fcinfo, 0, "event_id");
	text	   *resource_id = PG_ARGISNULL(1) ? NULL : waitlist_id_arg(fcinfo, 1, "resource_id");
	Datum		values[2] = {PointerGetDatum(event_id), PointerGetDatum(resource_id)};
	char		nulls[2] = {' ', resource_id == NULL ? 'n' : ' '};
	SPITupleTable *revived;
	uint64		i;
	WaitlistApiCall call;

	waitlist_api_begin(&call);
	waitlist_execute(&event_exists_plan, values, nulls, false, 0, NULL);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("capacity event \"%s\" does not exist", text_to_cstring(event_id))));
	waitlist_execute(&revive_events_plan, values, nulls, false, 0, NULL);
	revived = SPI_tuptable;
	for (i = 0; i < revived->numvals; i++)
	{
		text	   *owner = waitlist_spi_text(revived, i, 1);
		int64		offers;

		if (waitlist_defer_to_worker())
			waitlist_wake_owner_at_commit(owner);
		else
			(void) waitlist_fold_and_promote(owner, &offers, true);
	}
	waitlist_api_end(&call);

	PG_RETURN_INT32((int32) revived->numvals);
}
