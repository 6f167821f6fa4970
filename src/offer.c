/*-------------------------------------------------------------------------
 *
 * offer.c
 *	  The end of an offer: accept, decline, expiry and revocation, each of
 *	  which settles the offered unit of capacity exactly once.
 *
 * Lock order, everywhere: the resource's gate, then the resource row, then
 * entry and offer rows.  Whatever gives a unit back takes the gate
 * exclusively (see waitlist_lock_resource_gate()).
 *
 * IDENTIFICATION
 *	  src/offer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "waitlist.h"

/*
 * Revoke the entry's open offer and cancel the entry, with the outbox row
 * that tells the fan.  Returns the number of offers revoked (0 or 1).
 */
static WaitlistPlan revoke_plan = {
	"WITH revoked AS ("
	"  UPDATE waitlist.offer SET state = 'REVOKED', decided_at = pg_catalog.now()"
	"  WHERE resource_id = $1 AND entry_id = $2 AND state = 'OPEN'"
	"  RETURNING offer_id, entry_id"
	"), cancelled AS ("
	"  UPDATE waitlist.entry e SET state = 'CANCELLED', updated_at = pg_catalog.now()"
	"  FROM revoked r"
	"  WHERE e.resource_id = $1 AND e.entry_id = r.entry_id AND e.state = 'OFFERED'"
	"  RETURNING e.entry_id, e.user_id"
	"), notified AS ("
	"  INSERT INTO waitlist.outbox (resource_id, entry_id, offer_id, event_type, payload)"
	"  SELECT $1, c.entry_id, r.offer_id, 'offer_revoked',"
	"         pg_catalog.jsonb_build_object('resource_id', $1, 'entry_id', c.entry_id,"
	"             'offer_id', r.offer_id, 'user_id', c.user_id, 'reason', 'left')"
	"  FROM revoked r JOIN cancelled c ON c.entry_id = r.entry_id"
	") SELECT pg_catalog.count(*) FROM cancelled",
	2, {TEXTOID, INT8OID}
};

/*
 * Leave while offered: the offer is REVOKED, the entry CANCELLED and the
 * unit goes to the next waiter, in the caller's transaction.  Returns false
 * if the entry was no longer OFFERED once locked.
 */
bool
waitlist_revoke_offer_of_entry(text *resource_id, int64 entry_id)
{
	WaitlistResource res;
	Datum		values[2] = {PointerGetDatum(resource_id), Int64GetDatum(entry_id)};
	bool		isnull;
	int64		revoked;

	waitlist_lock_resource_gate(resource_id, true);
	waitlist_lock_resource(resource_id, &res);
	waitlist_execute(&revoke_plan, values, NULL, false, 0, "left while offered");
	revoked = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	if (revoked == 0)
		return false;
	waitlist_give_back_units(resource_id, revoked);
	return true;
}
