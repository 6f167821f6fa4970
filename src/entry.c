/*-------------------------------------------------------------------------
 *
 * entry.c
 *	  A fan's place in line: joining, leaving, and the status a fan sees.
 *
 * A join never writes a row shared with other joins (no counter, no lock on
 * the resource row), so 200,000 fans can join one resource in parallel; the
 * order of the line is (priority DESC, seq) within the resource, read from a
 * partial index.
 *
 * IDENTIFICATION
 *	  src/entry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(waitlist_join);
PG_FUNCTION_INFO_V1(waitlist_leave);
PG_FUNCTION_INFO_V1(waitlist_status);
PG_FUNCTION_INFO_V1(waitlist_confirm);

static WaitlistPlan active_entry_plan = {
	"SELECT entry_id FROM waitlist.entry "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2"
	"  AND state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED'])",
	2, {TEXTOID, TEXTOID}
};

/*
 * How many are waiting, counting no further than the cap; a place waiting
 * for its confirmation counts.
 */
static WaitlistPlan count_waiting_plan = {
	"SELECT pg_catalog.count(*) FROM ("
	"  SELECT 1 FROM waitlist.entry"
	"  WHERE resource_id OPERATOR(pg_catalog.=) $1"
	"    AND state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING'])"
	"  LIMIT $2"
	") w",
	2, {TEXTOID, INT8OID}
};

static WaitlistPlan find_entry_plan = {
	"SELECT resource_id, state FROM waitlist.entry WHERE entry_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};

/*
 * The position is one plus the WAITING entries ahead in line order: those
 * ranked higher (1.0: of higher priority), and those ranked the same that
 * joined earlier.  Both counts are ranges of the line index.  The entry's
 * resource is found first (find_entry_plan), so that every table is read
 * by it.
 */
#define STATUS_SQL(rank) \
	"SELECT e.state," \
	"  CASE WHEN e.state OPERATOR(pg_catalog.=) 'WAITING' THEN 1" \
	"    OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM waitlist.entry a" \
	"       WHERE a.resource_id OPERATOR(pg_catalog.=) $1" \
	"         AND a.state OPERATOR(pg_catalog.=) 'WAITING'" \
	"         AND a." rank " OPERATOR(pg_catalog.>) e." rank ")" \
	"    OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM waitlist.entry a" \
	"       WHERE a.resource_id OPERATOR(pg_catalog.=) $1" \
	"         AND a.state OPERATOR(pg_catalog.=) 'WAITING'" \
	"         AND a." rank " OPERATOR(pg_catalog.=) e." rank "" \
	"         AND a.seq OPERATOR(pg_catalog.<) e.seq)" \
	"  END," \
	"  o.offer_id, o.expires_at " \
	"FROM waitlist.entry e " \
	"LEFT JOIN waitlist.offer o" \
	"  ON o.resource_id OPERATOR(pg_catalog.=) $1" \
	"  AND o.entry_id OPERATOR(pg_catalog.=) e.entry_id" \
	"  AND o.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING']) " \
	"WHERE e.resource_id OPERATOR(pg_catalog.=) $1 AND e.entry_id OPERATOR(pg_catalog.=) $2"

static WaitlistPlan status_plans[2] = {
	{STATUS_SQL("priority"), 2, {TEXTOID, INT8OID}},
	{STATUS_SQL("rank_key"), 2, {TEXTOID, INT8OID}}
};

/* a resource's join rate (0: no limit) and burst, from 1.1 on */
static WaitlistPlan join_rate_plan = {
	"SELECT coalesce(join_rate_per_second, 0), coalesce(join_burst, 0)"
	" FROM waitlist.resource WHERE resource_id OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static int64
first_int8(bool *found)
{
	bool		isnull;

	*found = SPI_processed > 0;
	if (!*found)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

static void
entry_not_found(int64 entry_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("waitlist entry %lld does not exist", (long long) entry_id)));
}

/*
 * Join a resource that has a max_waiting cap: joins queue on the cap lock so
 * that the count checked here cannot be overtaken by a concurrent join.
 */
static int64
join_capped(text *resource_id, Datum *values)
{
	WaitlistResource res;
	int64		entry_id;
	int64		waiting;
	bool		found;
	bool		capped;
	int64		free_units;
	Datum		count_values[2];

	waitlist_lock_resource_cap(resource_id);
	waitlist_read_resource(resource_id, &res);

	waitlist_execute(&active_entry_plan, values, NULL, false, 0);
	entry_id = first_int8(&found);
	if (found)
		return entry_id;

	if (!res.max_waiting_isnull)
	{
		count_values[0] = values[0];
		count_values[1] = Int64GetDatum(res.max_waiting);
		waitlist_execute(&count_waiting_plan, count_values, NULL, false, 0);
		waiting = first_int8(&found);
		if (waiting >= res.max_waiting)
			ereport(ERROR,
					(errcode(ERRCODE_WAITLIST_FULL),
					 errmsg("waitlist for resource \"%s\" is full",
							text_to_cstring(resource_id)),
					 errdetail("The resource allows at most %lld waiting entries.",
							   (long long) res.max_waiting)));
	}

	return waitlist_apply_join(resource_id, DatumGetTextPP(values[1]), values[2],
							   true, &capped, &free_units);
}

/*
 * Admit a join against its resource's rate limit, reading the rate into the
 * resource's bucket the first time.  Returns false if refused; *retry_ms is
 * then when a join may be admitted again.
 */
static bool
admit_join(text *resource_id, uint32 hash, int64 *retry_ms)
{
	WaitlistJoinAdmission admission = waitlist_take_join_token(hash, retry_ms);

	if (admission == WAITLIST_JOIN_UNKNOWN)
	{
		double		rate = 0;
		int32		burst = 0;

		if (waitlist_ranked_line_installed())
		{
			Datum		values[1] = {PointerGetDatum(resource_id)};
			bool		isnull;

			waitlist_execute(&join_rate_plan, values, NULL, true, 1);
			if (SPI_processed == 0)
				waitlist_resource_not_found(resource_id);
			rate = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			burst = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		}
		waitlist_learn_join_rate(hash, rate, burst);
		admission = waitlist_take_join_token(hash, retry_ms);
	}
	return admission != WAITLIST_JOIN_REFUSED;
}

/*
 * waitlist_join(resource_id text, user_id text, priority integer)
 * RETURNS bigint
 *
 * Idempotent while the entry is active: a double tap returns the entry the
 * first tap made, whatever the resource's join rate.  If the resource has
 * free units (released while nobody waited) the new entry is promoted at
 * once.  Joins beyond the resource's join rate are refused (WL018).
 */
Datum
waitlist_join(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	text	   *user_id = waitlist_id_arg(fcinfo, 1, "user_id");
	Datum		values[3];
	WaitlistApiCall call;
	bool		capped;
	int64		entry_id = -1;
	int64		free_units;
	uint32		hash;
	int64		retry_ms = 0;
	bool		existed = false;

	waitlist_check_not_null(fcinfo, 2, "priority");
	waitlist_require_read_committed("waitlist_join()", NULL);
	values[0] = PointerGetDatum(resource_id);
	values[1] = PointerGetDatum(user_id);
	values[2] = PG_GETARG_DATUM(2);

	waitlist_api_begin(&call);

	hash = waitlist_resource_hash(resource_id);
	if (!admit_join(resource_id, hash, &retry_ms))
	{
		bool		found;

		/* a fan already in line is never turned away */
		waitlist_execute(&active_entry_plan, values, NULL, false, 0);
		entry_id = first_int8(&found);
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_WAITLIST_JOIN_RATE),
					 errmsg("too many joins for waitlist resource \"%s\"",
							text_to_cstring(resource_id)),
					 errdetail("The resource admits joins at a limited rate."),
					 errhint("Retry in %lld ms.", (long long) Max(retry_ms, 1))));
		waitlist_api_end(&call);
		PG_RETURN_INT64(entry_id);
	}

	/*
	 * Held to commit, the gate makes a concurrent release either visible to
	 * the statement below (and so promoted here) or wait until this join
	 * has committed (and so promote it): see waitlist_lock_resource_gate().
	 */
	waitlist_lock_resource_gate(resource_id, false);

	entry_id = waitlist_apply_join(resource_id, user_id, values[2], false,
								   &capped, &free_units);

	if (capped)
		entry_id = join_capped(resource_id, values);
	if (entry_id < 0)
	{
		bool		found;

		/* a concurrent tap of the same user made the entry first */
		waitlist_execute(&active_entry_plan, values, NULL, false, 0);
		entry_id = first_int8(&found);
		if (!found)
			elog(ERROR, "active entry vanished after a conflicting join");
		existed = true;
	}
	/* a double tap takes no join from anyone */
	if (existed)
		waitlist_return_join_token(hash);

	if (free_units > 0 || capped)
		waitlist_promote_if_free(resource_id);

	waitlist_api_end(&call);
	PG_RETURN_INT64(entry_id);
}

/*
 * waitlist_leave(entry_id bigint) RETURNS boolean
 *
 * WAITING -> CANCELLED.  An OFFERED entry is cancelled too; its open offer
 * is revoked and the unit goes to the next waiter.  Returns false when the
 * entry had already left the line (a repeated leave).
 */
Datum
waitlist_leave(PG_FUNCTION_ARGS)
{
	int64		entry_id;
	Datum		values[2];
	WaitlistApiCall call;
	bool		left = false;
	int			attempts;

	waitlist_check_not_null(fcinfo, 0, "entry_id");
	entry_id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(entry_id);

	waitlist_api_begin(&call);
	for (attempts = 0;; attempts++)
	{
		text	   *resource_id;
		char	   *state;

		waitlist_execute(&find_entry_plan, values, NULL, false, 0);
		if (SPI_processed == 0)
			entry_not_found(entry_id);
		resource_id = waitlist_spi_text(SPI_tuptable, 0, 1);
		state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		/* each retry follows a committed change of the entry; few can happen */
		if (attempts > 3)
			elog(ERROR, "waitlist entry %lld keeps changing state", (long long) entry_id);

		if (strcmp(state, "WAITING") == 0)
		{
			/*
			 * Hold the gate so that a promotion adding units waits for us
			 * instead of skipping our locked row: if this leave rolls back,
			 * the entry must still get the unit.
			 */
			waitlist_lock_resource_gate(resource_id, false);
			if (waitlist_apply_leave(WAITLIST_EVENT_LEAVE, resource_id, entry_id))
			{
				left = true;
				break;
			}
			/* promoted (or left) meanwhile: look again */
			continue;
		}
		if (strcmp(state, "PENDING") == 0)
		{
			/* not in line yet: no promotion can be waiting for it */
			if (waitlist_apply_leave(WAITLIST_EVENT_LEAVE_UNCONFIRMED, resource_id, entry_id))
			{
				left = true;
				break;
			}
			continue;
		}
		if (strcmp(state, "OFFERED") == 0)
		{
			left = waitlist_revoke_offer_of_entry(resource_id, entry_id);
			if (left)
				break;
			continue;
		}
		break;
	}
	waitlist_api_end(&call);

	PG_RETURN_BOOL(left);
}

/*
 * waitlist_status(entry_id bigint, OUT state text, OUT position bigint, OUT
 * offer_id bigint, OUT offer_expires_at timestamptz) RETURNS record
 */
Datum
waitlist_status(PG_FUNCTION_ARGS)
{
	int64		entry_id;
	Datum		values[4];
	bool		nulls[4];
	Datum		arg[2];
	TupleDesc	tupdesc;
	HeapTupleHeader result;
	WaitlistApiCall call;
	int			i;

	waitlist_check_not_null(fcinfo, 0, "entry_id");
	entry_id = PG_GETARG_INT64(0);
	arg[0] = Int64GetDatum(entry_id);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	waitlist_api_begin(&call);
	waitlist_execute(&find_entry_plan, arg, NULL, false, 0);
	if (SPI_processed == 0)
		entry_not_found(entry_id);
	arg[1] = arg[0];
	arg[0] = PointerGetDatum(waitlist_spi_text(SPI_tuptable, 0, 1));
	waitlist_execute(&status_plans[waitlist_ranked_line_installed()], arg, NULL, false, 0);
	if (SPI_processed == 0)
		entry_not_found(entry_id);
	for (i = 0; i < 4; i++)
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  i + 1, &nulls[i]);
	/* copied to the caller's memory before SPI's goes away */
	result = SPI_returntuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
	waitlist_api_end(&call);

	PG_RETURN_DATUM(HeapTupleHeaderGetDatum(result));
}

/*
 * waitlist_confirm(entry_id bigint) RETURNS boolean
 *
 * PENDING -> WAITING: the fan confirmed their place (clicked the link), and
 * takes part in promotion from now on, from the place they joined at or
 * from the back of the line (confirm_place_from).  Returns false if the
 * place was confirmed before (or never needed it); an unconfirmed place
 * let go, or one that left, is an error: the fan joins again.
 */
Datum
waitlist_confirm(PG_FUNCTION_ARGS)
{
	int64		entry_id;
	Datum		values[1];
	text	   *resource_id;
	char	   *state;
	WaitlistApiCall call;
	bool		confirmed = false;

	waitlist_check_not_null(fcinfo, 0, "entry_id");
	entry_id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(entry_id);

	waitlist_require_read_committed("waitlist_confirm()", NULL);
	waitlist_api_begin(&call);
	waitlist_execute(&find_entry_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		entry_not_found(entry_id);
	resource_id = waitlist_spi_text(SPI_tuptable, 0, 1);

	/* a new waiter: the gate, as for a join, so no free unit is missed */
	waitlist_lock_resource_gate(resource_id, false);
	if (waitlist_apply_leave(WAITLIST_EVENT_CONFIRM, resource_id, entry_id))
	{
		confirmed = true;
		waitlist_promote_if_free(resource_id);
	}
	else
	{
		waitlist_execute(&find_entry_plan, values, NULL, false, 0);
		state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (strcmp(state, "EXPIRED") == 0 || strcmp(state, "CANCELLED") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("waitlist entry %lld can no longer be confirmed", (long long) entry_id),
					 errdetail("The entry is %s.", state),
					 errhint("Join the waitlist again.")));
	}
	waitlist_api_end(&call);

	PG_RETURN_BOOL(confirmed);
}
