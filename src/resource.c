/*-------------------------------------------------------------------------
 *
 * resource.c
 *	  Waitlisted resources: creating and altering them, their settings
 *	  checked when they are set.
 *
 * IDENTIFICATION
 *	  src/resource.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(waitlist_create_resource);
PG_FUNCTION_INFO_V1(waitlist_alter_resource);

/* a channel list without repeats, in the order given */
#define DEDUPED_CHANNELS(param) \
	"(SELECT pg_catalog.array_agg(c ORDER BY n) FROM" \
	" (SELECT c, pg_catalog.min(n) AS n FROM pg_catalog.unnest(" param "::pg_catalog.text[]) WITH ORDINALITY u(c, n)" \
	"  GROUP BY c) d)"

/*
 * The settings of 1.0 are $1 to $7 of the create and $1 to $10 of the alter;
 * those of the accept saga and extensions follow (1.1).
 */
/* a join rate's burst when none is given: one second's worth, at least one */
#define JOIN_BURST_DEFAULT_SQL(rate) \
	"CASE WHEN " rate " IS NOT NULL THEN GREATEST(1, pg_catalog.ceil(" rate "))::pg_catalog.int4 END"

#define INSERT_RESOURCE_SQL(columns, values) \
	"INSERT INTO waitlist.resource (resource_id, offer_ttl, max_waiting, booking_function," \
	"                               channels, wave_size, wave_interval" columns ") " \
	"SELECT $1, $2, $3, $4," \
	"       coalesce(" DEDUPED_CHANNELS("$5") ", '{webhook}')," \
	"       $6, $7" values " ON CONFLICT (resource_id) DO NOTHING"

static WaitlistPlan insert_resource_plans[2] = {
	{INSERT_RESOURCE_SQL("", ""),
	7, {TEXTOID, INTERVALOID, INT8OID, REGPROCEDUREOID, TEXTARRAYOID, INT4OID, INTERVALOID}},
	{INSERT_RESOURCE_SQL(", booking, booking_timeout, booking_max_attempts, max_offer_extension,"
						 " aging_interval, confirm_within, confirm_place_from, position_visibility,"
						 " position_bands, rule_version, join_rate_per_second, join_burst,"
						 " offers_close_at, min_offer_ttl, ttl_shrink, max_party_size, party_policy,"
						 " offer_fanout",
						 ", $8, $9, $10, $11, $12, $13, $14, $15, $16,"
						 " CASE WHEN $12 IS NULL THEN 'priority-fifo/1' ELSE 'priority-aging/1' END,"
						 " $17, coalesce($18, " JOIN_BURST_DEFAULT_SQL("$17") "), $19, $20, $21,"
						 " $22, $23, $24"),
		24, {TEXTOID, INTERVALOID, INT8OID, REGPROCEDUREOID, TEXTARRAYOID, INT4OID, INTERVALOID,
			TEXTOID, INTERVALOID, INT4OID, INTERVALOID,
			INTERVALOID, INTERVALOID, TEXTOID, TEXTOID, INT4ARRAYOID, FLOAT8OID, INT4OID,
			TIMESTAMPTZOID, INTERVALOID, BOOLOID,
	INT4OID, TEXTOID, INT4OID}}
};

static WaitlistPlan alter_resource_plan = {
	"UPDATE waitlist.resource SET "
	"  offer_ttl = coalesce($2, offer_ttl), "
	"  max_waiting = CASE WHEN $4 THEN NULL ELSE coalesce($3, max_waiting) END, "
	"  booking_function = CASE WHEN $6 THEN NULL ELSE coalesce($5, booking_function) END, "
	"  channels = coalesce(" DEDUPED_CHANNELS("$7") ", channels), "
	"  wave_size = CASE WHEN $10 THEN NULL ELSE coalesce($8, wave_size) END, "
	"  wave_interval = CASE WHEN $10 THEN NULL ELSE coalesce($9, wave_interval) END, "
	"  updated_at = pg_catalog.now() "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1",
	10, {TEXTOID, INTERVALOID, INT8OID, BOOLOID, REGPROCEDUREOID, BOOLOID,
	TEXTARRAYOID, INT4OID, INTERVALOID, BOOLOID}
};

/*
 * The settings of 1.1, and the booking function with them (the plan above
 * then leaves it alone), as the booking and the function go together.
 * Naming a function ($2) makes the resource book with it; clearing it ($3)
 * leaves a resource booking with none, unless booking ($4) says otherwise.
 */
static WaitlistPlan alter_booking_plan = {
	"UPDATE waitlist.resource SET "
	"  booking_function = CASE WHEN $3 THEN NULL ELSE coalesce($2, booking_function) END, "
	"  booking = coalesce($4, CASE WHEN $2 IS NOT NULL THEN 'function'"
	"    WHEN $3 AND booking OPERATOR(pg_catalog.=) 'function' THEN 'none'"
	"    ELSE booking END), "
	"  booking_timeout = coalesce($5, booking_timeout), "
	"  booking_max_attempts = coalesce($6, booking_max_attempts), "
	"  max_offer_extension = CASE WHEN $8 THEN NULL ELSE coalesce($7, max_offer_extension) END "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1",
	8, {TEXTOID, REGPROCEDUREOID, BOOLOID, TEXTOID, INTERVALOID, INT4OID, INTERVALOID, BOOLOID}
};

/*
 * The ordering and position settings ($2 to $9: aging_interval, clear it,
 * confirm_within, clear it, confirm_place_from, position_visibility,
 * position_bands, clear them).
 */
static WaitlistPlan alter_order_plan = {
	"UPDATE waitlist.resource SET "
	"  aging_interval = CASE WHEN $3 THEN NULL ELSE coalesce($2, aging_interval) END, "
	"  confirm_within = CASE WHEN $5 THEN NULL ELSE coalesce($4, confirm_within) END, "
	"  confirm_place_from = coalesce($6, confirm_place_from), "
	"  position_visibility = coalesce($7, position_visibility), "
	"  position_bands = CASE WHEN $9 THEN NULL ELSE coalesce($8, position_bands) END "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1",
	9, {TEXTOID, INTERVALOID, BOOLOID, INTERVALOID, BOOLOID, TEXTOID, TEXTOID, INT4ARRAYOID,
	BOOLOID}
};

/* the join rate ($2, with burst $3; $4 clears it) */
static WaitlistPlan alter_join_rate_plan = {
	"UPDATE waitlist.resource SET "
	"  join_rate_per_second = CASE WHEN $4 THEN NULL ELSE coalesce($2, join_rate_per_second) END, "
	"  join_burst = CASE WHEN $4 THEN NULL"
	"    WHEN $2 IS NOT NULL THEN coalesce($3, " JOIN_BURST_DEFAULT_SQL("$2") ")"
	"    ELSE join_burst END "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1",
	4, {TEXTOID, FLOAT8OID, INT4OID, BOOLOID}
};

/*
 * The offer cutoff ($2, cleared by $3), min_offer_ttl ($4, cleared by $5)
 * and ttl_shrink ($6); a line that has closed stays closed.
 */
static WaitlistPlan alter_cutoff_plan = {
	"UPDATE waitlist.resource SET "
	"  offers_close_at = CASE WHEN $3 THEN NULL ELSE coalesce($2, offers_close_at) END, "
	"  min_offer_ttl = CASE WHEN $5 THEN NULL ELSE coalesce($4, min_offer_ttl) END, "
	"  ttl_shrink = coalesce($6, ttl_shrink) "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1 "
	"RETURNING closed_at IS NOT NULL",
	6, {TEXTOID, TIMESTAMPTZOID, BOOLOID, INTERVALOID, BOOLOID, BOOLOID}
};

/*
 * Parties and parallel offers ($2 max_party_size, $3 party_policy, $4
 * offer_fanout).
 */
static WaitlistPlan alter_party_plan = {
	"UPDATE waitlist.resource SET "
	"  max_party_size = coalesce($2, max_party_size), "
	"  party_policy = coalesce($3, party_policy), "
	"  offer_fanout = coalesce($4, offer_fanout) "
	"WHERE resource_id OPERATOR(pg_catalog.=) $1",
	4, {TEXTOID, INT4OID, TEXTOID, INT4OID}
};

/* the party settings a change of them starts from */
static WaitlistPlan party_settings_plan = {
	"SELECT max_party_size, offer_fanout FROM waitlist.resource"
	" WHERE resource_id OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/* the parties of more than one in line, which a fanout would not serve */
static WaitlistPlan parties_in_line_plan = {
	"SELECT pg_catalog.count(*) FROM waitlist.entry e"
	" WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
	"   AND e.state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED'])"
	"   AND e.quantity OPERATOR(pg_catalog.>) 1",
	1, {TEXTOID}
};

/* the ordering rules as they read, to see whether an alter changed them */
static WaitlistPlan ordering_rules_plan = {
	"SELECT coalesce(aging_interval::pg_catalog.text, 'none'),"
	"       coalesce(confirm_within::pg_catalog.text, 'none'), confirm_place_from, party_policy"
	" FROM waitlist.resource WHERE resource_id OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/*
 * The line ranked again under new aging: a fan's place counts from their
 * join, or from their confirmation where the resource says so.
 */
static WaitlistPlan rerank_plan = {
	"UPDATE waitlist.entry e"
	" SET rank_key = e.priority OPERATOR(pg_catalog.-)"
	"     CASE WHEN r.aging_interval IS NULL THEN 0::pg_catalog.float8"
	"     ELSE pg_catalog.date_part('epoch',"
	"            CASE WHEN r.confirm_place_from OPERATOR(pg_catalog.=) 'confirm'"
	"                  AND e.confirmed_at IS NOT NULL THEN e.confirmed_at ELSE e.joined_at END)"
	"          OPERATOR(pg_catalog./) pg_catalog.date_part('epoch', r.aging_interval) END"
	" FROM waitlist.resource r"
	" WHERE r.resource_id OPERATOR(pg_catalog.=) $1 AND e.resource_id OPERATOR(pg_catalog.=) $1"
	"   AND e.state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED'])",
	1, {TEXTOID}
};

/* the arguments of the 1.1 signatures, and those of 1.0 */
#define CREATE_ARGS_1_0		7
#define CREATE_ARGS			24
#define ALTER_ARGS_1_0		10
#define ALTER_ARGS			34

/* the most bands a resource may show */
#define MAX_POSITION_BANDS	20

static void
check_offer_ttl(Datum ttl)
{
	waitlist_check_interval(ttl, "offer_ttl", WAITLIST_MAX_SETTING_INTERVAL,
							"An offer must stay open for some time before it expires.", NULL);
}

static void
check_max_waiting(int64 max_waiting)
{
	if (max_waiting <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_waiting must be positive"),
				 errhint("Pass NULL for a waitlist without a cap.")));
	if (max_waiting > WAITLIST_MAX_WAITING)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_waiting must not exceed " INT64_FORMAT, WAITLIST_MAX_WAITING),
				 errdetail("The largest cap allowed is " INT64_FORMAT " entries.", WAITLIST_MAX_WAITING),
				 errhint("Pass NULL for a waitlist without a cap.")));
}

/*
 * A booking function takes (resource_id text, user_id text, offer_id bigint,
 * idempotency_key text) and returns the reservation reference as text.  It
 * is checked when it is configured, not when the first fan accepts.
 */
static void
check_booking_function(Oid funcid)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("booking function %u does not exist", funcid)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->prokind == PROKIND_FUNCTION &&
		!proc->proretset &&
		proc->prorettype == TEXTOID &&
		proc->pronargs == 4 &&
		proc->proargtypes.values[0] == TEXTOID &&
		proc->proargtypes.values[1] == TEXTOID &&
		proc->proargtypes.values[2] == INT8OID &&
		proc->proargtypes.values[3] == TEXTOID;
	ReleaseSysCache(tuple);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("booking function %s has the wrong signature",
						format_procedure(funcid)),
				 errdetail("A booking function must take (resource_id text, user_id text, offer_id bigint, idempotency_key text) and return text.")));
}

/*
 * How a resource books: 'none' (an accept is the booking), 'function' (its
 * booking function, in the accept's transaction) or 'external' (an accept
 * saga with an external booking service).  has_function: whether the
 * resource will have a booking function.
 */
static void
check_booking(const char *booking, bool has_function)
{
	if (strcmp(booking, "none") != 0 && strcmp(booking, "function") != 0 &&
		strcmp(booking, "external") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown booking \"%s\"", booking),
				 errhint("booking is 'none', 'function' or 'external'.")));
	if (strcmp(booking, "function") == 0 && !has_function)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("booking => 'function' needs a booking_function")));
	if (strcmp(booking, "function") != 0 && has_function)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("booking => '%s' cannot have a booking_function", booking),
				 errhint("Clear it with clear_booking_function => true.")));
}

static void
check_booking_timeout(Datum timeout)
{
	waitlist_check_interval(timeout, "booking_timeout", WAITLIST_MAX_SETTING_INTERVAL,
							"The booking service needs some time to book.", NULL);
}

static void
check_booking_max_attempts(int32 attempts)
{
	if (attempts < 1 || attempts > WAITLIST_MAX_BOOKING_ATTEMPTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("booking_max_attempts must be between 1 and %d",
						WAITLIST_MAX_BOOKING_ATTEMPTS)));
}

/* Zero forbids extensions. */
static void
check_max_offer_extension(Datum max_extension)
{
	Interval   *zero = palloc0(sizeof(Interval));

	if (DatumGetBool(DirectFunctionCall2(interval_lt, max_extension, IntervalPGetDatum(zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_offer_extension must not be negative"),
				 errhint("Pass interval '0' for offers that are never extended, NULL for one offer_ttl.")));
	if (DatumGetBool(DirectFunctionCall2(interval_eq, max_extension, IntervalPGetDatum(zero))))
		return;
	waitlist_check_interval(max_extension, "max_offer_extension", WAITLIST_MAX_SETTING_INTERVAL,
							NULL, NULL);
}

/* The settings of the accept saga and extensions, from argument "first" on. */
static void
check_saga_settings(FunctionCallInfo fcinfo, int first)
{
	if (!PG_ARGISNULL(first + 1))
		check_booking_timeout(PG_GETARG_DATUM(first + 1));
	if (!PG_ARGISNULL(first + 2))
		check_booking_max_attempts(PG_GETARG_INT32(first + 2));
	if (!PG_ARGISNULL(first + 3))
		check_max_offer_extension(PG_GETARG_DATUM(first + 3));
}

/* Ordering: aging and confirmed places, bounded like the other intervals. */
static void
check_ordering(FunctionCallInfo fcinfo, int aging_arg, int confirm_arg, int place_from_arg)
{
	if (!PG_ARGISNULL(aging_arg))
		waitlist_check_interval(PG_GETARG_DATUM(aging_arg), "aging_interval",
								WAITLIST_MAX_SETTING_INTERVAL,
								"A fan earns one priority point per aging_interval waited.",
								NULL);
	if (!PG_ARGISNULL(confirm_arg))
		waitlist_check_interval(PG_GETARG_DATUM(confirm_arg), "confirm_within",
								WAITLIST_MAX_SETTING_INTERVAL,
								"A fan needs some time to confirm their place.", NULL);
	if (!PG_ARGISNULL(place_from_arg))
	{
		char	   *place_from = text_to_cstring(PG_GETARG_TEXT_PP(place_from_arg));

		if (strcmp(place_from, "join") != 0 && strcmp(place_from, "confirm") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown confirm_place_from \"%s\"", place_from),
					 errhint("A confirmed place counts from the 'join' or from the 'confirm'.")));
	}
}

/*
 * What waitlist_status() shows of a place: 'exact', 'band' or 'none'; and
 * the bands' upper bounds, increasing, positive, at most 20 of them.
 */
static void
check_position_display(FunctionCallInfo fcinfo, int visibility_arg, int bands_arg)
{
	if (!PG_ARGISNULL(visibility_arg))
	{
		char	   *visibility = text_to_cstring(PG_GETARG_TEXT_PP(visibility_arg));

		if (strcmp(visibility, "exact") != 0 && strcmp(visibility, "band") != 0 &&
			strcmp(visibility, "none") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown position_visibility \"%s\"", visibility),
					 errhint("position_visibility is 'exact', 'band' or 'none'.")));
	}
	if (!PG_ARGISNULL(bands_arg))
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n = waitlist_flat_array(PG_GETARG_DATUM(bands_arg), INT4OID, "position_bands",
											&elems, &nulls);
		int			i;

		if (n < 1 || n > MAX_POSITION_BANDS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("position_bands must have 1 to %d bounds", MAX_POSITION_BANDS),
					 errhint("Pass NULL for the bands 1-10, 11-100, 101-1,000, 1,001-10,000 and 10,001+.")));
		for (i = 0; i < n; i++)
			if (nulls[i] || DatumGetInt32(elems[i]) < 1 ||
				(i > 0 && DatumGetInt32(elems[i]) <= DatumGetInt32(elems[i - 1])))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("position_bands must be increasing positive upper bounds"),
						 errdetail("Each bound is the last place of its band; the last band has no bound.")));
	}
}

/*
 * A join rate limit: the channels' bounds, a burst only with a rate, and
 * the shared memory that keeps the buckets (the library preloaded).
 */
static void
check_join_rate(FunctionCallInfo fcinfo, int rate_arg, int burst_arg)
{
	if (!PG_ARGISNULL(burst_arg) && PG_ARGISNULL(rate_arg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("join_burst needs a join_rate_per_second"),
				 errhint("Give both, or the rate alone for a burst of one second's joins.")));
	if (PG_ARGISNULL(rate_arg))
		return;
	if (!(PG_GETARG_FLOAT8(rate_arg) >= WAITLIST_MIN_JOIN_RATE &&
		  PG_GETARG_FLOAT8(rate_arg) <= WAITLIST_MAX_JOIN_RATE))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("join_rate_per_second %g is out of range", PG_GETARG_FLOAT8(rate_arg)),
				 errdetail("A join rate must be between %g and %g joins per second.",
						   WAITLIST_MIN_JOIN_RATE, WAITLIST_MAX_JOIN_RATE),
				 errhint("Pass NULL (or clear_join_rate) for a waitlist without a join limit.")));
	if (!PG_ARGISNULL(burst_arg) &&
		(PG_GETARG_INT32(burst_arg) < 1 || PG_GETARG_INT32(burst_arg) > WAITLIST_MAX_JOIN_BURST))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("join_burst must be between 1 and %d", WAITLIST_MAX_JOIN_BURST)));
	if (!waitlist_join_limits_available())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("join rate limits need waitlist in shared_preload_libraries"),
				 errdetail("The buckets that count joins live in shared memory."),
				 errhint("Add waitlist to shared_preload_libraries and restart the server.")));
}

/* The offer cutoff: in the future; the least time an offer gets, bounded. */
static void
check_cutoff(FunctionCallInfo fcinfo, int close_arg, int min_ttl_arg)
{
	if (!PG_ARGISNULL(close_arg) &&
		PG_GETARG_TIMESTAMPTZ(close_arg) <= GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offers_close_at must be in the future"),
				 errdetail("No offer is made after offers_close_at; one in the past would close the line at once.")));
	if (!PG_ARGISNULL(min_ttl_arg))
		waitlist_check_interval(PG_GETARG_DATUM(min_ttl_arg), "min_offer_ttl",
								WAITLIST_MAX_SETTING_INTERVAL,
								"An offer needs some time to be answered.", NULL);
}

/*
 * Parties and parallel offers: a party size and a fanout within their
 * bounds, a known policy; a fanned-out unit is one unit, so a fanout above
 * one takes parties of one only (the values the resource will have).
 */
static void
check_parties(FunctionCallInfo fcinfo, int size_arg, int policy_arg, int fanout_arg)
{
	if (!PG_ARGISNULL(size_arg) &&
		(PG_GETARG_INT32(size_arg) < 1 || PG_GETARG_INT32(size_arg) > WAITLIST_MAX_PARTY_SIZE))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_party_size %d is out of range", PG_GETARG_INT32(size_arg)),
				 errdetail("A party has between 1 and %d members.", WAITLIST_MAX_PARTY_SIZE)));
	if (!PG_ARGISNULL(policy_arg))
	{
		char	   *policy = text_to_cstring(PG_GETARG_TEXT_PP(policy_arg));

		if (strcmp(policy, "strict") != 0 && strcmp(policy, "skip_to_fit") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown party_policy \"%s\"", policy),
					 errhint("Use 'strict' (the head of the line waits until its party fits) or 'skip_to_fit' (the first party that fits is offered).")));
	}
	if (!PG_ARGISNULL(fanout_arg) &&
		(PG_GETARG_INT32(fanout_arg) < 1 || PG_GETARG_INT32(fanout_arg) > WAITLIST_MAX_OFFER_FANOUT))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offer_fanout %d is out of range", PG_GETARG_INT32(fanout_arg)),
				 errdetail("A unit is offered to between 1 and %d fans at once.",
						   WAITLIST_MAX_OFFER_FANOUT)));
}

static void
refuse_fanout_with_parties(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("offer_fanout above 1 needs max_party_size 1"),
			 errdetail("%s", detail),
			 errhint("A unit offered to several fans at once is one unit: keep parties on resources with offer_fanout 1.")));
}

/* Waves: a size and an interval within their bounds, given together. */
static void
check_waves(FunctionCallInfo fcinfo, int size_arg, int interval_arg, bool altering)
{
	bool		has_size = !PG_ARGISNULL(size_arg);
	bool		has_interval = !PG_ARGISNULL(interval_arg);

	if (has_size != has_interval && !altering)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wave_size and wave_interval must be given together")));
	if (has_size && PG_GETARG_INT32(size_arg) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wave_size must be positive")));
	if (has_size && PG_GETARG_INT32(size_arg) > WAITLIST_MAX_WAVE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wave_size must not exceed %d", WAITLIST_MAX_WAVE_SIZE),
				 errdetail("A wave offers at most %d units.", WAITLIST_MAX_WAVE_SIZE)));
	if (has_interval)
		waitlist_check_interval(PG_GETARG_DATUM(interval_arg), "wave_interval",
								WAITLIST_MAX_SETTING_INTERVAL,
								"A wave must last for some time before the next one starts.", NULL);
}

/*
 * waitlist_create_resource(resource_id text, offer_ttl interval, max_waiting
 * bigint, booking_function regprocedure, channels text[], wave_size integer,
 * wave_interval interval, ...) RETURNS void
 *
 * The settings of 1.1 follow those of 1.0 (docs/api.md lists them all, in
 * order: the accept saga, ordering, positions, join rate, cutoff, parties).
 * A database still on 1.0 calls it with the first seven.
 */
Datum
waitlist_create_resource(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	int			nargs = PG_NARGS() >= CREATE_ARGS ? CREATE_ARGS : CREATE_ARGS_1_0;
	Datum		values[CREATE_ARGS];
	char		nulls[CREATE_ARGS];
	WaitlistApiCall call;
	int			i;

	WAITLIST_FORWARD(WAITLIST_ROUTE_RESOURCE, 0);

	waitlist_check_not_null(fcinfo, 1, "offer_ttl");
	if (nargs == CREATE_ARGS)
	{
		char	   *booking;

		waitlist_check_not_null(fcinfo, 8, "booking_timeout");
		waitlist_check_not_null(fcinfo, 9, "booking_max_attempts");
		check_saga_settings(fcinfo, 7);
		booking = PG_ARGISNULL(7) ? (PG_ARGISNULL(3) ? "none" : "function") :
			text_to_cstring(PG_GETARG_TEXT_PP(7));
		check_booking(booking, !PG_ARGISNULL(3));
		waitlist_check_not_null(fcinfo, 13, "confirm_place_from");
		waitlist_check_not_null(fcinfo, 14, "position_visibility");
		check_ordering(fcinfo, 11, 12, 13);
		check_position_display(fcinfo, 14, 15);
		check_join_rate(fcinfo, 16, 17);
		waitlist_check_not_null(fcinfo, 20, "ttl_shrink");
		check_cutoff(fcinfo, 18, 19);
		waitlist_check_not_null(fcinfo, 21, "max_party_size");
		waitlist_check_not_null(fcinfo, 22, "party_policy");
		waitlist_check_not_null(fcinfo, 23, "offer_fanout");
		check_parties(fcinfo, 21, 22, 23);
		if (PG_GETARG_INT32(23) > 1 && PG_GETARG_INT32(21) > 1)
			refuse_fanout_with_parties(psprintf("The resource would take parties of up to %d.",
												PG_GETARG_INT32(21)));
	}
	check_offer_ttl(PG_GETARG_DATUM(1));
	if (!PG_ARGISNULL(2))
		check_max_waiting(PG_GETARG_INT64(2));
	if (!PG_ARGISNULL(3))
		check_booking_function(PG_GETARG_OID(3));
	if (!PG_ARGISNULL(4))
		waitlist_check_channels(PG_GETARG_DATUM(4), false);
	check_waves(fcinfo, 5, 6, false);

	values[0] = PointerGetDatum(resource_id);
	nulls[0] = ' ';
	for (i = 1; i < nargs; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	if (nargs == CREATE_ARGS && PG_ARGISNULL(7))
	{
		values[7] = CStringGetTextDatum(PG_ARGISNULL(3) ? "none" : "function");
		nulls[7] = ' ';
	}

	waitlist_api_begin(&call);
	waitlist_execute(&insert_resource_plans[nargs == CREATE_ARGS], values, nulls, false, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("waitlist resource \"%s\" already exists",
						text_to_cstring(resource_id)),
				 errhint("Use waitlist_alter_resource() to change its settings.")));
	waitlist_api_end(&call);

	PG_RETURN_VOID();
}

/* the ordering rules of a resource, as ordering_rules_plan reads them */
static char *
ordering_rules(text *resource_id)
{
	Datum		values[1] = {PointerGetDatum(resource_id)};

	waitlist_execute(&ordering_rules_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		waitlist_resource_not_found(resource_id);
	return psprintf("aging_interval %s, confirm_within %s, places counted from the %s, parties %s",
					SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
					SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
					SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3),
					SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4));
}

/*
 * Write the party settings (the alter's last three arguments): the fanout
 * and the party size the resource will have must go together, and a
 * fanout above one waits for the parties in line to be served first.
 */
static void
alter_parties(text *resource_id, Datum *settings, char *nulls)
{
	Datum		values[4];
	char		value_nulls[4];
	int32		max_party_size;
	int32		fanout;
	int64		parties;
	bool		isnull;
	int			i;

	/* most alters change other settings: nothing to read or write then */
	if (nulls[0] == 'n' && nulls[1] == 'n' && nulls[2] == 'n')
		return;
	values[0] = PointerGetDatum(resource_id);
	value_nulls[0] = ' ';
	waitlist_execute(&party_settings_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		waitlist_resource_not_found(resource_id);
	max_party_size = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	fanout = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (nulls[0] != 'n')
		max_party_size = DatumGetInt32(settings[0]);
	if (nulls[2] != 'n')
	{
		/* only a fanout switched on can strand the parties in line */
		parties = 0;
		if (DatumGetInt32(settings[2]) > 1 && fanout == 1)
		{
			waitlist_execute(&parties_in_line_plan, values, NULL, false, 0);
			parties = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
		if (parties > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("waitlist resource \"%s\" has parties of more than one in line",
							text_to_cstring(resource_id)),
					 errdetail("%lld entries in line are for parties; a fanned-out unit is one unit.",
							   (long long) parties),
					 errhint("Set offer_fanout once the parties in line have been served.")));
		fanout = DatumGetInt32(settings[2]);
	}
	if (fanout > 1 && max_party_size > 1)
		refuse_fanout_with_parties(psprintf("The resource would take parties of up to %d.",
											max_party_size));
	for (i = 0; i < 3; i++)
	{
		values[i + 1] = settings[i];
		value_nulls[i + 1] = nulls[i];
	}
	waitlist_execute(&alter_party_plan, values, value_nulls, false, 0);
}

/*
 * Write the ordering, position and party settings (the alter's arguments
 * from aging_interval on, and its last three); a change of the ordering
 * rules (the party policy is one) bumps the resource's rule version, is
 * audited, and ranks the line again.
 */
static void
alter_ordering(text *resource_id, Datum *settings, char *nulls,
			   Datum *party_settings, char *party_nulls)
{
	Datum		values[9];
	char		value_nulls[9];
	char	   *before = ordering_rules(resource_id);
	char	   *after;
	int			i;

	values[0] = PointerGetDatum(resource_id);
	value_nulls[0] = ' ';
	for (i = 0; i < 8; i++)
	{
		values[i + 1] = settings[i];
		value_nulls[i + 1] = nulls[i];
	}
	waitlist_execute(&alter_order_plan, values, value_nulls, false, 0);
	alter_parties(resource_id, party_settings, party_nulls);
	after = ordering_rules(resource_id);
	if (strcmp(before, after) == 0)
		return;
	(void) waitlist_apply_rule_change(resource_id, psprintf("ordering rules changed: %s", after));
	waitlist_execute(&rerank_plan, values, NULL, false, 0);
}

/*
 * waitlist_alter_resource(resource_id text, offer_ttl interval, max_waiting
 * bigint, clear_max_waiting boolean, booking_function regprocedure,
 * clear_booking_function boolean, channels text[], wave_size integer,
 * wave_interval interval, clear_waves boolean, ...) RETURNS void
 *
 * The settings of 1.1 follow, as in waitlist_create_resource().
 * A NULL setting stays as it is; the clear_* flags remove a cap, a booking
 * function, waves or the extension bound.  Open offers keep the deadline
 * they were made with, and sagas in flight their deadline and attempts.  A
 * database still on 1.0 calls it with the first ten.
 */
Datum
waitlist_alter_resource(PG_FUNCTION_ARGS)
{
	text	   *resource_id = waitlist_id_arg(fcinfo, 0, "resource_id");
	int			nargs = PG_NARGS() >= ALTER_ARGS ? ALTER_ARGS : ALTER_ARGS_1_0;
	Datum		values[ALTER_ARGS];
	char		nulls[ALTER_ARGS];
	WaitlistApiCall call;
	int			i;
	bool		isnull;

	WAITLIST_FORWARD(WAITLIST_ROUTE_RESOURCE, 0);

	if (nargs == ALTER_ARGS)
	{
		waitlist_check_not_null(fcinfo, 14, "clear_max_offer_extension");
		waitlist_check_not_null(fcinfo, 16, "clear_aging_interval");
		waitlist_check_not_null(fcinfo, 18, "clear_confirm_within");
		waitlist_check_not_null(fcinfo, 22, "clear_position_bands");
		waitlist_check_not_null(fcinfo, 25, "clear_join_rate");
		if (!PG_ARGISNULL(23) && PG_GETARG_BOOL(25))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot both set and clear the join rate")));
		check_join_rate(fcinfo, 23, 24);
		waitlist_check_not_null(fcinfo, 27, "clear_offers_close_at");
		waitlist_check_not_null(fcinfo, 29, "clear_min_offer_ttl");
		if ((!PG_ARGISNULL(26) && PG_GETARG_BOOL(27)) || (!PG_ARGISNULL(28) && PG_GETARG_BOOL(29)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot both set and clear %s",
							!PG_ARGISNULL(26) && PG_GETARG_BOOL(27) ? "offers_close_at" : "min_offer_ttl")));
		check_cutoff(fcinfo, 26, 28);
		check_parties(fcinfo, 31, 32, 33);
		check_saga_settings(fcinfo, 10);
		check_ordering(fcinfo, 15, 17, 19);
		check_position_display(fcinfo, 20, 21);
		if ((!PG_ARGISNULL(13) && PG_GETARG_BOOL(14)) ||
			(!PG_ARGISNULL(15) && PG_GETARG_BOOL(16)) ||
			(!PG_ARGISNULL(17) && PG_GETARG_BOOL(18)) ||
			(!PG_ARGISNULL(21) && PG_GETARG_BOOL(22)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot both set and clear %s",
							!PG_ARGISNULL(13) && PG_GETARG_BOOL(14) ? "max_offer_extension" :
							!PG_ARGISNULL(15) && PG_GETARG_BOOL(16) ? "aging_interval" :
							!PG_ARGISNULL(17) && PG_GETARG_BOOL(18) ? "confirm_within" :
							"position_bands")));
	}
	waitlist_check_not_null(fcinfo, 3, "clear_max_waiting");
	waitlist_check_not_null(fcinfo, 5, "clear_booking_function");
	waitlist_check_not_null(fcinfo, 9, "clear_waves");
	if (!PG_ARGISNULL(1))
		check_offer_ttl(PG_GETARG_DATUM(1));
	if (!PG_ARGISNULL(2))
	{
		check_max_waiting(PG_GETARG_INT64(2));
		if (PG_GETARG_BOOL(3))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot both set and clear max_waiting")));
	}
	if (!PG_ARGISNULL(4))
	{
		check_booking_function(PG_GETARG_OID(4));
		if (PG_GETARG_BOOL(5))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot both set and clear booking_function")));
	}
	if (!PG_ARGISNULL(6))
		waitlist_check_channels(PG_GETARG_DATUM(6), false);
	check_waves(fcinfo, 7, 8, true);
	if ((!PG_ARGISNULL(7) || !PG_ARGISNULL(8)) && PG_GETARG_BOOL(9))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot both set and clear waves")));

	values[0] = PointerGetDatum(resource_id);
	nulls[0] = ' ';
	for (i = 1; i < nargs; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}

	waitlist_api_begin(&call);
	/* lifting a wave limit may free units for people waiting: the gate comes first */
	waitlist_lock_resource_gate(resource_id, false);
	if (nargs == ALTER_ARGS && !PG_ARGISNULL(10))
	{
		WaitlistResource res;

		/* the booking the resource will have, with the function it will have */
		waitlist_read_resource(resource_id, &res);
		check_booking(text_to_cstring(PG_GETARG_TEXT_PP(10)),
					  !PG_ARGISNULL(4) ||
					  (OidIsValid(res.booking_function) && !PG_GETARG_BOOL(5)));
	}
	if (PG_ARGISNULL(7) != PG_ARGISNULL(8))
	{
		WaitlistResource res;

		waitlist_read_resource(resource_id, &res);
		if (res.wave_budget < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wave_size and wave_interval must be given together"),
					 errhint("The resource has no waves yet: set both.")));
	}
	if (nargs == ALTER_ARGS)
	{
		Datum		booking[8];
		char		booking_nulls[8];

		booking[0] = values[0];
		booking_nulls[0] = ' ';
		booking[1] = values[4];
		booking_nulls[1] = nulls[4];
		booking[2] = values[5];
		booking_nulls[2] = ' ';
		for (i = 3; i < 8; i++)
		{
			booking[i] = values[i + 7];
			booking_nulls[i] = nulls[i + 7];
		}
		waitlist_execute(&alter_booking_plan, booking, booking_nulls, false, 0);
		if (SPI_processed == 0)
			waitlist_resource_not_found(resource_id);
		nulls[4] = 'n';
		values[5] = BoolGetDatum(false);
	}
	waitlist_execute(&alter_resource_plan, values, nulls, false, 0);
	if (SPI_processed == 0)
		waitlist_resource_not_found(resource_id);
	if (nargs == ALTER_ARGS)
	{
		alter_ordering(resource_id, values + 15, nulls + 15, values + 31, nulls + 31);
		values[22] = values[0];
		nulls[22] = ' ';
		waitlist_execute(&alter_join_rate_plan, values + 22, nulls + 22, false, 0);
		values[25] = values[0];
		nulls[25] = ' ';
		waitlist_execute(&alter_cutoff_plan, values + 25, nulls + 25, false, 0);
		if ((!PG_ARGISNULL(26) || PG_GETARG_BOOL(27)) &&
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the waitlist of resource \"%s\" has closed",
							text_to_cstring(resource_id)),
					 errdetail("Its line closed at its offers_close_at, and a closed line stays closed."),
					 errhint("Create another resource for a new waitlist.")));
		/* the buckets read the rate again once this commits */
		waitlist_forget_join_rate_at_commit(waitlist_resource_hash(resource_id));
	}
	waitlist_promote_if_free(resource_id);
	waitlist_api_end(&call);

	PG_RETURN_VOID();
}
