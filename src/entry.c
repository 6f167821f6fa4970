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
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

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

/*
 * The end of both status statements: entry $2 of resource $1 ("e") and the
 * offer that holds units for it, if any ("o").
 */
#define ENTRY_AND_HELD_OFFER_SQL \
	"LEFT JOIN waitlist.offer o" \
	"  ON o.resource_id OPERATOR(pg_catalog.=) $1" \
	"  AND o.entry_id OPERATOR(pg_catalog.=) e.entry_id" \
	"  AND o.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING']) " \
	"WHERE e.resource_id OPERATOR(pg_catalog.=) $1 AND e.entry_id OPERATOR(pg_catalog.=) $2"

/*
 * On Citus the call runs on the node of the entry's resource by now
 * (WAITLIST_FORWARD), so the entry is looked for in that node's shards only.
 */
static WaitlistPlan find_entry_plan = {
	"SELECT resource_id, state FROM waitlist.entry WHERE entry_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}, 0, true
};

/*
 * 1.0's status, for a database not yet updated: the position is one plus
 * the WAITING entries ahead in line order, those of higher priority and
 * those of the same that joined earlier, counted (O(rank)).  The entry's
 * resource is found first (find_entry_plan), so that every table is read
 * by it.
 */
static WaitlistPlan status_1_0_plan = {
	"SELECT e.state,"
	"  CASE WHEN e.state OPERATOR(pg_catalog.=) 'WAITING' THEN 1"
	"    OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM waitlist.entry a"
	"       WHERE a.resource_id OPERATOR(pg_catalog.=) $1"
	"         AND a.state OPERATOR(pg_catalog.=) 'WAITING'"
	"         AND a.priority OPERATOR(pg_catalog.>) e.priority)"
	"    OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM waitlist.entry a"
	"       WHERE a.resource_id OPERATOR(pg_catalog.=) $1"
	"         AND a.state OPERATOR(pg_catalog.=) 'WAITING'"
	"         AND a.priority OPERATOR(pg_catalog.=) e.priority"
	"         AND a.seq OPERATOR(pg_catalog.<) e.seq)"
	"  END,"
	"  o.offer_id, o.expires_at "
	"FROM waitlist.entry e "
	ENTRY_AND_HELD_OFFER_SQL,
	2, {TEXTOID, INT8OID}
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
							   DatumGetInt32(values[3]), true, &capped, &free_units);
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

		if (waitlist_schema_is_1_1())
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
 * waitlist_join(resource_id text, user_id text, priority integer, quantity
 * integer) RETURNS bigint
 *
 * Idempotent while the entry is active: a double tap returns the entry the
 * first tap made, whatever the resource's join rate (and party size: the
 * first tap's stays).  If the resource has free units (released while
 * nobody waited) the new entry is promoted at once.  Joins beyond the
 * resource's join rate are refused (WL018), parties larger than its
 * max_party_size too.  A database still on 1.0 calls it without quantity.
 */
Datum
waitlist_join(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	text	   *user_id = waitlist_id_arg(fcinfo, 1, "user_id");
	Datum		values[4];
	int32		quantity = 1;
	WaitlistApiCall call;
	bool		capped;
	int64		entry_id = -1;
	int64		free_units;
	uint32		hash;
	int64		retry_ms = 0;
	bool		existed = false;
	int			attempts;

	WAITLIST_FORWARD(WAITLIST_ROUTE_RESOURCE, 0);

	waitlist_check_not_null(fcinfo, 2, "priority");
	if (PG_NARGS() > 3)
	{
		waitlist_check_not_null(fcinfo, 3, "quantity");
		quantity = PG_GETARG_INT32(3);
		if (quantity < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("quantity %d is out of range", quantity),
					 errdetail("A party has at least one member.")));
	}
	waitlist_require_read_committed("waitlist_join()", NULL);
	values[0] = PointerGetDatum(resource_id);
	values[1] = PointerGetDatum(user_id);
	values[2] = PG_GETARG_DATUM(2);
	values[3] = Int32GetDatum(quantity);

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

	for (attempts = 0;; attempts++)
	{
		bool		found;
		int64		active_id;

		entry_id = waitlist_apply_join(resource_id, user_id, values[2], quantity, false,
									   &capped, &free_units);
		if (capped && entry_id != -2)
			entry_id = join_capped(resource_id, values);
		if (entry_id >= 0)
			break;

		/* a concurrent tap of the same user made the entry first */
		waitlist_execute(&active_entry_plan, values, NULL, false, 0);
		active_id = first_int8(&found);
		if (found)
		{
			entry_id = active_id;
			existed = true;
			break;
		}
		/* a closed line turns away all but those in it */
		if (entry_id == -2)
			waitlist_refuse_closed(resource_id);

		/*
		 * The entry it conflicted with has left the line since (a leave
		 * that committed in between): join again, in a new snapshot.  Each
		 * retry follows a committed change of the fan's entries; few can.
		 */
		if (attempts >= 3)
			elog(ERROR, "active entry of the fan keeps vanishing after conflicting joins");
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

	WAITLIST_FORWARD(WAITLIST_ROUTE_ENTRY, 0);

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
 * What a fan sees of a long line is read from its sample rather than
 * counted: every LINE_SAMPLE_STEP-th WAITING entry's (rank_key, seq) and
 * its position, and the last entry's, taken in one snapshot at most once a
 * second per resource (waitlist.line_sample), with the resource's offers of
 * the last hour.  A fan's position is then the position of the nearer
 * sample point around them, plus or minus the WAITING entries between it
 * and them, counted now: at most about half of LINE_SAMPLE_STEP index
 * entries, wherever the fan stands.  Joins and promotions never touch the
 * sample.
 */
#define LINE_SAMPLE_STEP		1000
#define DEFAULT_BAND_COUNT		4

static const int32 default_bands[DEFAULT_BAND_COUNT] = {10, 100, 1000, 10000};

/* The OUT columns of 1.1's waitlist_status(); 1.0's has the first four. */
#define STATUS_COLUMNS			7

static WaitlistPlan status_entry_plan = {
	"SELECT e.state, e.rank_key, e.seq, o.offer_id, o.expires_at,"
	"  r.position_visibility, r.position_bands, r.rule_version "
	"FROM waitlist.entry e "
	"JOIN waitlist.resource r ON r.resource_id OPERATOR(pg_catalog.=) $1 "
	ENTRY_AND_HELD_OFFER_SQL,
	2, {TEXTOID, INT8OID}
};

/*
 * The sample, whether it was taken under the resource's rule version $2
 * (a rule change ranks the line again: the points' ranks mean nothing
 * after it), and whether it is due: older than a second, from the future
 * (a clock set back must not keep a sample forever), or of other rules.
 */
#define LINE_SAMPLE_COLUMNS \
	"sample_rank, sample_seq, sample_position, offers_per_hour," \
	" rule_version OPERATOR(pg_catalog.=) $2," \
	" pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '1 second' OPERATOR(pg_catalog.>) taken_at" \
	"   OR taken_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()" \
	"   OR rule_version OPERATOR(pg_catalog.<>) $2"

static WaitlistPlan line_sample_plan = {
	"SELECT " LINE_SAMPLE_COLUMNS " FROM waitlist.line_sample"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, TEXTOID}
};

/*
 * Taking the sample walks the line index from point to point: the next
 * point is the LINE_SAMPLE_STEP-th entry after the last, among those of
 * its rank (the count of the next up to LINE_SAMPLE_STEP of them and the
 * last one's seq) or else ranked below it ($3 entries skipped).  Each step
 * reads at most LINE_SAMPLE_STEP index entries through a LIMIT, several
 * times cheaper than numbering the whole line with a window function.
 */
#define WAITING_OF_RESOURCE \
	" FROM waitlist.entry a WHERE a.resource_id OPERATOR(pg_catalog.=) $1" \
	"   AND a.state OPERATOR(pg_catalog.=) 'WAITING'"

static WaitlistPlan step_same_rank_plan = {
	"SELECT pg_catalog.count(*), pg_catalog.max(n.seq) FROM ("
	"  SELECT a.seq" WAITING_OF_RESOURCE
	"    AND a.rank_key OPERATOR(pg_catalog.=) $2 AND a.seq OPERATOR(pg_catalog.>) $3"
	"  ORDER BY a.seq LIMIT " CppAsString2(LINE_SAMPLE_STEP) ") n",
	3, {TEXTOID, FLOAT8OID, INT8OID}, WAITLIST_GENERIC_PLAN
};

static WaitlistPlan step_lower_rank_plan = {
	"SELECT a.rank_key, a.seq" WAITING_OF_RESOURCE
	"  AND a.rank_key OPERATOR(pg_catalog.<) $2"
	" ORDER BY a.rank_key DESC, a.seq OFFSET $3 LIMIT 1",
	3, {TEXTOID, FLOAT8OID, INT8OID}, WAITLIST_GENERIC_PLAN
};

/* the last entry of the line (the index read backwards) */
static WaitlistPlan line_tail_plan = {
	"SELECT a.rank_key, a.seq" WAITING_OF_RESOURCE
	" ORDER BY a.rank_key, a.seq DESC LIMIT 1",
	1, {TEXTOID}
};

/* the rules the sample is taken under, and the offers of the hour before $2 */
static WaitlistPlan sample_rules_plan = {
	"SELECT r.rule_version,"
	"  (SELECT pg_catalog.count(*) FROM waitlist.offer o"
	"    WHERE o.resource_id OPERATOR(pg_catalog.=) $1"
	"      AND o.created_at OPERATOR(pg_catalog.>) ($2 OPERATOR(pg_catalog.-) interval '1 hour')"
	"  )::pg_catalog.float8 "
	"FROM waitlist.resource r WHERE r.resource_id OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, TIMESTAMPTZOID}
};

static WaitlistPlan store_line_sample_plan = {
	"INSERT INTO waitlist.line_sample AS s"
	"  (resource_id, taken_at, rule_version, sample_rank, sample_seq, sample_position,"
	"   offers_per_hour) "
	"SELECT $1, $2, $3, $4, $5, $6, $7 "
	"ON CONFLICT (resource_id) DO UPDATE SET taken_at = excluded.taken_at,"
	"  rule_version = excluded.rule_version,"
	"  sample_rank = excluded.sample_rank, sample_seq = excluded.sample_seq,"
	"  sample_position = excluded.sample_position, offers_per_hour = excluded.offers_per_hour",
	7, {TEXTOID, TIMESTAMPTZOID, TEXTOID, FLOAT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, FLOAT8OID}
};

/*
 * The WAITING entries from the point ($2, $3) (included, whether or not it
 * still waits) up to the fan ($4, $5) (excluded), in line order: each part
 * a range of the line index, so that a line of equal ranks is read by seq.
 * With the point ('Infinity', 0), all the entries ahead of the fan.  Its
 * plan is generic: a custom plan costs each call more planning than the
 * count, and the ranges are index ranges whatever the values.
 */
#define COUNT_WAITING_WHERE \
	"  FROM waitlist.entry a WHERE a.resource_id OPERATOR(pg_catalog.=) $1" \
	"    AND a.state OPERATOR(pg_catalog.=) 'WAITING' AND "

static WaitlistPlan count_to_fan_plan = {
	"SELECT CASE WHEN $2 OPERATOR(pg_catalog.=) $4 THEN"
	"  (SELECT pg_catalog.count(*)" COUNT_WAITING_WHERE
	"     a.rank_key OPERATOR(pg_catalog.=) $2"
	"     AND a.seq OPERATOR(pg_catalog.>=) $3 AND a.seq OPERATOR(pg_catalog.<) $5)"
	" ELSE"
	"  (SELECT pg_catalog.count(*)" COUNT_WAITING_WHERE
	"     a.rank_key OPERATOR(pg_catalog.=) $2 AND a.seq OPERATOR(pg_catalog.>=) $3)"
	"  OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*)" COUNT_WAITING_WHERE
	"     a.rank_key OPERATOR(pg_catalog.<) $2 AND a.rank_key OPERATOR(pg_catalog.>) $4)"
	"  OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*)" COUNT_WAITING_WHERE
	"     a.rank_key OPERATOR(pg_catalog.=) $4 AND a.seq OPERATOR(pg_catalog.<) $5)"
	" END",
	5, {TEXTOID, FLOAT8OID, INT8OID, FLOAT8OID, INT8OID}, WAITLIST_GENERIC_PLAN
};

/* A resource's line sample, as read; offers_per_hour < 0: none at all. */
typedef struct LineSample
{
	int			npoints;
	float8	   *rank;
	int64	   *seq;
	int64	   *position;
	float8		offers_per_hour;
	bool		usable;			/* taken under the current rules */
	bool		due;
} LineSample;

static void
int8_array(Datum d, int64 **out, int *n)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Datum	   *elems;
	bool	   *elem_nulls;
	int			i;

	deconstruct_array(arr, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, n);
	*out = palloc(sizeof(int64) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		(*out)[i] = elem_nulls[i] ? 0 : DatumGetInt64(elems[i]);
}

/* The sample the last statement returned, if it returned a usable one. */
static bool
read_line_sample(LineSample *sample)
{
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	bool		isnull;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nrank,
				nseq,
				npos,
				i;

	if (SPI_processed == 0)
		return false;
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;

	arr = DatumGetArrayTypeP(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, &nrank);
	sample->rank = palloc(sizeof(float8) * Max(nrank, 1));
	for (i = 0; i < nrank; i++)
		sample->rank[i] = elem_nulls[i] ? 0 : DatumGetFloat8(elems[i]);
	int8_array(SPI_getbinval(tuple, tupdesc, 2, &isnull), &sample->seq, &nseq);
	int8_array(SPI_getbinval(tuple, tupdesc, 3, &isnull), &sample->position, &npos);
	/* a row written by hand with arrays of different lengths: no sample */
	sample->npoints = (nrank == nseq && nseq == npos) ? nrank : 0;
	sample->offers_per_hour = DatumGetFloat8(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	if (isnull)
		sample->offers_per_hour = -1;
	sample->usable = DatumGetBool(SPI_getbinval(tuple, tupdesc, 5, &isnull)) && !isnull;
	sample->due = DatumGetBool(SPI_getbinval(tuple, tupdesc, 6, &isnull)) || isnull;
	return sample->usable;
}

/* Room for cap points in the sample's arrays; returns cap. */
static int
grow_line_sample(LineSample *sample, int cap)
{
	if (sample->rank == NULL)
	{
		sample->rank = palloc(sizeof(float8) * cap);
		sample->seq = palloc(sizeof(int64) * cap);
		sample->position = palloc(sizeof(int64) * cap);
	}
	else
	{
		sample->rank = repalloc(sample->rank, sizeof(float8) * cap);
		sample->seq = repalloc(sample->seq, sizeof(int64) * cap);
		sample->position = repalloc(sample->position, sizeof(int64) * cap);
	}
	return cap;
}

/*
 * Take the resource's sample anew and store it.  All its reads share one
 * fresh snapshot, so that the positions are those of one instant, which
 * taken_at records.
 */
static void
take_line_sample(text *resource_id, LineSample *sample)
{
	Datum		args[7];
	bool		isnull;
	int			cap = 64;
	int			n = 0;
	float8		rank = get_float8_infinity();
	int64		seq = 0;
	int64		skip = 0;
	TimestampTz taken_at;
	Datum	   *elems;
	int			i;

	PushActiveSnapshot(GetTransactionSnapshot());
	taken_at = GetCurrentTimestamp();
	sample->rank = NULL;
	cap = grow_line_sample(sample, cap);
	args[0] = PointerGetDatum(resource_id);
	for (;;)
	{
		int64		same = 0;

		CHECK_FOR_INTERRUPTS();
		if (n > 0)
		{
			args[1] = Float8GetDatum(rank);
			args[2] = Int64GetDatum(seq);
			waitlist_execute(&step_same_rank_plan, args, NULL, true, 0);
			same = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			if (same == LINE_SAMPLE_STEP)
				seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
			skip = LINE_SAMPLE_STEP - 1 - same;
			/* a step's rows are done with: a long line takes many steps */
			SPI_freetuptable(SPI_tuptable);
		}
		if (same < LINE_SAMPLE_STEP)
		{
			bool		last;

			args[1] = Float8GetDatum(rank);
			args[2] = Int64GetDatum(skip);
			waitlist_execute(&step_lower_rank_plan, args, NULL, true, 0);
			last = SPI_processed == 0;
			if (!last)
			{
				rank = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
				seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
			}
			SPI_freetuptable(SPI_tuptable);
			if (last)
				break;
		}
		if (n == cap)
			cap = grow_line_sample(sample, cap * 2);
		sample->rank[n] = rank;
		sample->seq[n] = seq;
		sample->position[n] = (int64) n * LINE_SAMPLE_STEP + 1;
		n++;
	}
	/* the back of the line is a point too: no fan counts more than half a block */
	if (n > 0)
	{
		waitlist_execute(&line_tail_plan, args, NULL, true, 0);
		rank = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (rank != sample->rank[n - 1] || seq != sample->seq[n - 1])
		{
			args[1] = Float8GetDatum(sample->rank[n - 1]);
			args[2] = Int64GetDatum(sample->seq[n - 1]);
			args[3] = Float8GetDatum(rank);
			args[4] = Int64GetDatum(seq);
			waitlist_execute(&count_to_fan_plan, args, NULL, true, 0);
			if (n == cap)
				cap = grow_line_sample(sample, cap + 1);
			sample->position[n] = sample->position[n - 1] +
				DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			sample->rank[n] = rank;
			sample->seq[n] = seq;
			n++;
		}
	}
	args[1] = TimestampTzGetDatum(taken_at);
	waitlist_execute(&sample_rules_plan, args, NULL, true, 0);
	if (SPI_processed == 0)
		waitlist_resource_not_found(resource_id);
	args[2] = PointerGetDatum(waitlist_spi_text(SPI_tuptable, 0, 1));
	sample->offers_per_hour = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	PopActiveSnapshot();

	sample->npoints = n;
	sample->usable = true;
	sample->due = false;
	elems = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
		elems[i] = Float8GetDatum(sample->rank[i]);
	args[3] = PointerGetDatum(construct_array(elems, n, FLOAT8OID, sizeof(float8),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(sample->seq[i]);
	args[4] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(sample->position[i]);
	args[5] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[6] = Float8GetDatum(sample->offers_per_hour);
	waitlist_execute(&store_line_sample_plan, args, NULL, false, 0);
}

/*
 * The resource's line sample, refreshed first if it is due and this call
 * may write: not on a standby, not in a read-only transaction, and not
 * under REPEATABLE READ or SERIALIZABLE, whose snapshot may be older than
 * the sample (and whose write could fail the caller's transaction).  Those
 * use no sample that is due (the line is counted: a standby polled alone
 * would otherwise show positions as old as the primary's last poll).  One
 * refresher at a time; the others use the sample as it is, which the
 * refresher is replacing.
 */
static bool
get_line_sample(text *resource_id, text *rule_version, LineSample *sample)
{
	Datum		arg[2] = {PointerGetDatum(resource_id), PointerGetDatum(rule_version)};
	bool		found;

	waitlist_execute(&line_sample_plan, arg, NULL, false, 0);
	found = read_line_sample(sample);
	if (found && !sample->due)
		return true;
	if (RecoveryInProgress() || XactReadOnly || IsolationUsesXactSnapshot())
		return false;
	if (!waitlist_try_lock_resource_sample(resource_id))
		return found;

	/* a refresher that committed while we looked may have left a fresh one */
	waitlist_execute(&line_sample_plan, arg, NULL, false, 0);
	found = read_line_sample(sample);
	if (found && !sample->due)
		return true;
	take_line_sample(resource_id, sample);
	return true;
}

/*
 * Whether a fan between points i and i + 1 is likely nearer the second,
 * judged by where their seq (or, across ranks, their rank) falls between
 * the points': a guess that only decides which side is counted.
 */
static bool
nearer_next_point(const LineSample *sample, int i, float8 rank, int64 seq)
{
	double		frac;

	if (sample->rank[i] == sample->rank[i + 1])
		frac = (double) (seq - sample->seq[i]) /
			(double) (sample->seq[i + 1] - sample->seq[i]);
	else
		frac = (sample->rank[i] - rank) / (sample->rank[i] - sample->rank[i + 1]);
	return frac > 0.5;
}

/*
 * The fan's position: from the nearer of the sample points around them
 * (binary search), counting the entries between, or from the head of the
 * line for a fan in the first block or without a sample.
 */
static int64
fan_position(text *resource_id, float8 rank, int64 seq, const LineSample *sample)
{
	int			lo = 0,
				hi = sample ? sample->npoints : 0;
	Datum		args[5];
	int64		base = 1;
	bool		isnull;

	/* invariant: points before lo are at or ahead of the fan, from hi on behind */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (sample->rank[mid] > rank ||
			(sample->rank[mid] == rank && sample->seq[mid] <= seq))
			lo = mid + 1;
		else
			hi = mid;
	}
	args[0] = PointerGetDatum(resource_id);

	/*
	 * A fan in the first block is counted from the head, exactly: lines of
	 * up to a block (whose last entry is a point too) are live.
	 */
	if (lo > 1 && sample->position[lo - 1] <= LINE_SAMPLE_STEP)
		lo = 0;
	if (lo > 1 && lo < sample->npoints && nearer_next_point(sample, lo - 1, rank, seq))
	{
		/* from the fan (included) up to the next point: it is that much ahead */
		args[1] = Float8GetDatum(rank);
		args[2] = Int64GetDatum(seq);
		args[3] = Float8GetDatum(sample->rank[lo]);
		args[4] = Int64GetDatum(sample->seq[lo]);
		waitlist_execute(&count_to_fan_plan, args, NULL, false, 0);
		return Max(1, sample->position[lo] -
				   DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull)));
	}
	if (lo > 1)
	{
		args[1] = Float8GetDatum(sample->rank[lo - 1]);
		args[2] = Int64GetDatum(sample->seq[lo - 1]);
		base = sample->position[lo - 1];
	}
	else
	{
		args[1] = Float8GetDatum(get_float8_infinity());
		args[2] = Int64GetDatum(0);
	}
	args[3] = Float8GetDatum(rank);
	args[4] = Int64GetDatum(seq);
	waitlist_execute(&count_to_fan_plan, args, NULL, false, 0);
	return base + DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
}

/* 12345 -> "12,345" */
static void
append_grouped(StringInfo buf, int64 n)
{
	char		digits[32];
	int			len,
				i;

	len = snprintf(digits, sizeof(digits), INT64_FORMAT, n);
	for (i = 0; i < len; i++)
	{
		if (i > 0 && digits[i - 1] != '-' && (len - i) % 3 == 0)
			appendStringInfoChar(buf, ',');
		appendStringInfoChar(buf, digits[i]);
	}
}

/*
 * The band of a position: "1-10", "11-100", ..., "10,001+" for the default
 * upper bounds, or the resource's (increasing, checked when set).  Sets
 * *bound to the position the estimate of a hidden position uses: the band's
 * upper bound, or the lower bound of the open last band.
 */
static char *
position_band(int64 position, const int32 *bounds, int nbounds, int64 *bound)
{
	StringInfoData buf;
	int64		lower = 1;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < nbounds; i++)
	{
		if (position <= bounds[i])
		{
			append_grouped(&buf, lower);
			appendStringInfoChar(&buf, '-');
			append_grouped(&buf, bounds[i]);
			*bound = bounds[i];
			return buf.data;
		}
		lower = (int64) bounds[i] + 1;
	}
	append_grouped(&buf, lower);
	appendStringInfoChar(&buf, '+');
	*bound = lower;
	return buf.data;
}

/* The resource's bands, or the default ones for NULL (or a malformed list). */
static int
resource_bands(Datum d, bool isnull, int32 **bounds)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n,
				i;

	*bounds = (int32 *) default_bands;
	if (isnull)
		return DEFAULT_BAND_COUNT;
	arr = DatumGetArrayTypeP(d);
	deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &elems, &elem_nulls, &n);
	if (n < 1)
		return DEFAULT_BAND_COUNT;
	for (i = 0; i < n; i++)
		if (elem_nulls[i] || DatumGetInt32(elems[i]) < 1 ||
			(i > 0 && DatumGetInt32(elems[i]) <= DatumGetInt32(elems[i - 1])))
			return DEFAULT_BAND_COUNT;
	*bounds = palloc(sizeof(int32) * n);
	for (i = 0; i < n; i++)
		(*bounds)[i] = DatumGetInt32(elems[i]);
	return n;
}

/*
 * The status of a WAITING fan of a 1.1 schema: position (if the resource
 * shows it), band (unless it shows nothing), and the estimated wait, from
 * the position (or, where it is hidden, the band's bound) over the offers
 * per hour of the last hour; NULL with the reason in the note.
 */
static void
waiting_status(text *resource_id, float8 rank, int64 seq, const char *visibility,
			   Datum bands_datum, bool bands_isnull, text *rule_version,
			   Datum *values, bool *nulls)
{
	LineSample	sample;
	bool		have_sample;
	int64		position;
	int64		bound;
	int32	   *bounds;
	int			nbounds;
	char	   *band;
	int64		estimate_from;
	const char *basis = "position";
	StringInfoData note;

	if (strcmp(visibility, "none") == 0)
	{
		values[6] = CStringGetTextDatum("position hidden");
		nulls[6] = false;
		return;
	}
	have_sample = get_line_sample(resource_id, rule_version, &sample);
	position = fan_position(resource_id, rank, seq, have_sample ? &sample : NULL);
	nbounds = resource_bands(bands_datum, bands_isnull, &bounds);
	band = position_band(position, bounds, nbounds, &bound);
	values[4] = CStringGetTextDatum(band);
	nulls[4] = false;

	/* where the position is hidden, nothing derived from it may show it */
	if (strcmp(visibility, "exact") == 0)
	{
		values[1] = Int64GetDatum(position);
		nulls[1] = false;
		estimate_from = position;
	}
	else
	{
		estimate_from = bound;
		basis = bound > bounds[nbounds - 1] ? "lower bound of the band" :
			"upper bound of the band";
	}

	initStringInfo(&note);
	if (!have_sample || sample.offers_per_hour < 0)
		appendStringInfoString(&note, "no promotion history yet");
	else if (sample.offers_per_hour < 1)
		appendStringInfoString(&note, "no offers in the last hour");
	else
	{
		Interval   *wait = palloc0(sizeof(Interval));
		float8		secs = rint((float8) estimate_from * 3600.0 / sample.offers_per_hour);
		int64		offers = (int64) sample.offers_per_hour;

		/* a billion positions at one offer an hour stay in range */
		wait->time = (int64) Min(secs, 4e12) * USECS_PER_SEC;
		values[5] = IntervalPGetDatum(wait);
		nulls[5] = false;
		appendStringInfo(&note, "%s over ", basis);
		append_grouped(&note, offers);
		appendStringInfoString(&note, offers == 1 ?
							   " offer in the last hour" : " offers in the last hour");
	}
	values[6] = CStringGetTextDatum(note.data);
	nulls[6] = false;
}

/*
 * waitlist_status(entry_id bigint, OUT state text, OUT position bigint, OUT
 * offer_id bigint, OUT offer_expires_at timestamptz, OUT band text, OUT
 * estimated_wait interval, OUT estimate_note text) RETURNS record
 *
 * 1.0 declared the first four columns: the row is built for the columns
 * the call's declaration has, and a 1.0 schema is counted as 1.0 did.
 */
Datum
waitlist_status(PG_FUNCTION_ARGS)
{
	int64		entry_id;
	Datum		values[STATUS_COLUMNS];
	bool		nulls[STATUS_COLUMNS];
	Datum		arg[2];
	TupleDesc	tupdesc;
	HeapTupleHeader result;
	WaitlistApiCall call;
	int			i;

	WAITLIST_FORWARD(WAITLIST_ROUTE_ENTRY, 0);

	waitlist_check_not_null(fcinfo, 0, "entry_id");
	entry_id = PG_GETARG_INT64(0);
	arg[0] = Int64GetDatum(entry_id);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts > STATUS_COLUMNS)
		elog(ERROR, "waitlist_status() declares %d columns, at most %d are known",
			 tupdesc->natts, STATUS_COLUMNS);
	tupdesc = BlessTupleDesc(tupdesc);
	for (i = 0; i < STATUS_COLUMNS; i++)
	{
		values[i] = (Datum) 0;
		nulls[i] = true;
	}

	waitlist_api_begin(&call);
	waitlist_execute(&find_entry_plan, arg, NULL, false, 0);
	if (SPI_processed == 0)
		entry_not_found(entry_id);
	arg[1] = arg[0];
	arg[0] = PointerGetDatum(waitlist_spi_text(SPI_tuptable, 0, 1));
	if (!waitlist_schema_is_1_1())
	{
		waitlist_execute(&status_1_0_plan, arg, NULL, false, 0);
		if (SPI_processed == 0)
			entry_not_found(entry_id);
		for (i = 0; i < 4; i++)
			values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  i + 1, &nulls[i]);
	}
	else
	{
		SPITupleTable *entry;
		HeapTuple	tuple;
		bool		isnull;
		char	   *state;

		waitlist_execute(&status_entry_plan, arg, NULL, false, 0);
		if (SPI_processed == 0)
			entry_not_found(entry_id);
		entry = SPI_tuptable;
		tuple = entry->vals[0];
		values[0] = SPI_getbinval(tuple, entry->tupdesc, 1, &nulls[0]);
		values[2] = SPI_getbinval(tuple, entry->tupdesc, 4, &nulls[2]);
		values[3] = SPI_getbinval(tuple, entry->tupdesc, 5, &nulls[3]);
		state = TextDatumGetCString(values[0]);
		if (strcmp(state, "WAITING") == 0)
		{
			float8		rank = DatumGetFloat8(SPI_getbinval(tuple, entry->tupdesc, 2, &isnull));
			int64		seq = DatumGetInt64(SPI_getbinval(tuple, entry->tupdesc, 3, &isnull));
			char	   *visibility = SPI_getvalue(tuple, entry->tupdesc, 6);
			bool		bands_isnull;
			Datum		bands = SPI_getbinval(tuple, entry->tupdesc, 7, &bands_isnull);
			text	   *rule_version = waitlist_spi_text(entry, 0, 8);

			waiting_status((text *) DatumGetPointer(arg[0]), rank, seq, visibility,
						   bands, bands_isnull, rule_version, values, nulls);
		}
		else
		{
			values[6] = CStringGetTextDatum("not waiting");
			nulls[6] = false;
		}
	}
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

	WAITLIST_FORWARD(WAITLIST_ROUTE_ENTRY, 0);

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
