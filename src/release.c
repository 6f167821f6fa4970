/*-------------------------------------------------------------------------
 *
 * release.c
 *	  SQL entry points that add capacity or promote: waitlist_release(),
 *	  waitlist_promote() and waitlist_retry_event().
 *
 * IDENTIFICATION
 *	  src/release.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(waitlist_release);
PG_FUNCTION_INFO_V1(waitlist_promote);
PG_FUNCTION_INFO_V1(waitlist_retry_event);

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

	WAITLIST_FORWARD(WAITLIST_ROUTE_RESOURCE, 0);

	if (!PG_ARGISNULL(1))
	{
		max_offers = PG_GETARG_INT32(1);
		if (max_offers < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_offers must not be negative"),
					 errhint("Pass NULL to offer every free unit.")));
	}

	waitlist_require_read_committed("waitlist_promote()", NULL);
	waitlist_api_begin(&call);
	waitlist_lock_resource_gate(resource_id, true);
	waitlist_lock_resource(resource_id, &res);
	offers = waitlist_promote_locked(resource_id, max_offers, &res, NULL);
	waitlist_api_end(&call);

	PG_RETURN_INT32((int32) offers);
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

	WAITLIST_FORWARD(WAITLIST_ROUTE_RESOURCE, 0);

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

/* the resources that have an event of this id ($2: only that resource) */
static WaitlistPlan event_resources_plan = {
	"SELECT DISTINCT resource_id FROM waitlist.capacity_event"
	" WHERE event_id OPERATOR(pg_catalog.=) $1"
	"   AND ($2::pg_catalog.text IS NULL OR resource_id OPERATOR(pg_catalog.=) $2)",
	2, {TEXTOID, TEXTOID}
};

/*
 * A capacity event named without its resource, on a Citus cluster: the
 * call made again for each resource that has an event of that id, each on
 * its resource's node.
 */
static int32
retry_event_on_cluster(FunctionCallInfo fcinfo, text *event_id)
{
	WaitlistApiCall call;
	Datum		values[2] = {PointerGetDatum(event_id), (Datum) 0};
	char		nulls[2] = {' ', 'n'};
	SPITupleTable *resources;
	int64		revived = 0;

	waitlist_api_begin(&call);
	waitlist_execute(&event_resources_plan, values, nulls, true, 0);
	resources = SPI_tuptable;
	if (resources->numvals == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("capacity event \"%s\" does not exist", text_to_cstring(event_id))));
	for (uint64 i = 0; i < resources->numvals; i++)
		revived += DatumGetInt32(OidFunctionCall2(fcinfo->flinfo->fn_oid, values[0],
												  PointerGetDatum(waitlist_spi_text(resources, i, 1))));
	waitlist_api_end(&call);
	return (int32) revived;
}

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
	int32		nrevived;
	WaitlistApiCall call;

	if (resource_id != NULL)
		WAITLIST_FORWARD(WAITLIST_ROUTE_RESOURCE, 1);
	else if (waitlist_tables_distributed())
		PG_RETURN_INT32(retry_event_on_cluster(fcinfo, event_id));

	waitlist_api_begin(&call);
	waitlist_execute(&event_resources_plan, values, nulls, false, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("capacity event \"%s\" does not exist", text_to_cstring(event_id))));
	waitlist_execute(&revive_events_plan, values, nulls, false, 0);
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
	/* (the rows go with the SPI frame) */
	nrevived = (int32) revived->numvals;
	waitlist_api_end(&call);

	PG_RETURN_INT32(nrevived);
}
