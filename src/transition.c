/*-------------------------------------------------------------------------
 *
 * transition.c
 *	  The transition engine: the state machine of entries and offers as one
 *	  table, and the statements that apply it, each writing the audit rows
 *	  and outbox rows of the states it changes in the same statement.
 *
 * waitlist_rules is the state machine.  For each (entity, from state,
 * event) it gives the next state, what happens to the offered unit of
 * capacity, the outbox event and the reason recorded.  The engine's
 * statements are built from it when first used and kept: a state name,
 * an outbox event or a reason is spelled once, here.  Each statement is
 * set-based (a promotion moves as many rows as there are free units) and
 * filters every table it touches on resource_id, joining only on it, so
 * that a distributed engine sharding by resource_id can route it to one
 * node; none nests a subquery inside INSERT ... VALUES.
 *
 * The audit rows are written by the statement itself (a data-modifying
 * CTE), not by triggers: nothing is captured into transition tables, and
 * no trigger reads one.  A state change made by hand (a DBA's UPDATE of
 * waitlist.entry or waitlist.offer) is checked against the same table by
 * the row guard (guard.c), refused if the state machine has no such move,
 * and audited as 'manual' by waitlist_record_by_hand().
 *
 * IDENTIFICATION
 *	  src/transition.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "commands/async.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "engine.h"

#define WAITING		"WAITING"
#define OFFERED		"OFFERED"
#define OPEN		"OPEN"
#define ACCEPTING	"ACCEPTING"
#define PENDING		"PENDING"

/*
 * The state machine.  An offer holds one unit of capacity from its creation
 * until it is settled; its entry moves with it.  The unit effect and the
 * outbox event of a settlement are on the offer's rule, the entry's rule
 * says where the fan ends up.
 */
const WaitlistRule waitlist_rules[] = {
	{WAITLIST_ENTITY_ENTRY, NULL, WAITLIST_EVENT_JOIN, WAITING,
	WAITLIST_UNIT_NONE, NULL, "joined"},
	{WAITLIST_ENTITY_ENTRY, WAITING, WAITLIST_EVENT_LEAVE, "CANCELLED",
	WAITLIST_UNIT_NONE, NULL, "left"},
	{WAITLIST_ENTITY_ENTRY, WAITING, WAITLIST_EVENT_PROMOTE, OFFERED,
	WAITLIST_UNIT_NONE, NULL, "promoted"},
	{WAITLIST_ENTITY_OFFER, NULL, WAITLIST_EVENT_PROMOTE, OPEN,
	WAITLIST_UNIT_HOLD, "offer_created", "promoted"},

	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_ACCEPT, "ACCEPTED",
	WAITLIST_UNIT_CONSUME, "offer_accepted", "accepted"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_ACCEPT, "ACCEPTED",
	WAITLIST_UNIT_NONE, NULL, "accepted"},
	/* the booking system says the seat is gone: the fan keeps their place */
	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_BOOKING_CONFLICT, "FAILED",
	WAITLIST_UNIT_RETIRE, "offer_failed", "booking conflict"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_BOOKING_CONFLICT, WAITING,
	WAITLIST_UNIT_NONE, NULL, "booking conflict"},
	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_DECLINE, "DECLINED",
	WAITLIST_UNIT_RETURN, "offer_declined", "declined"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_DECLINE, "DECLINED",
	WAITLIST_UNIT_NONE, NULL, "declined"},
	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_EXPIRE, "EXPIRED",
	WAITLIST_UNIT_RETURN, "offer_expired", "expired"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_EXPIRE, "EXPIRED",
	WAITLIST_UNIT_NONE, NULL, "expired"},
	/* the fan left while offered */
	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_REVOKE, "REVOKED",
	WAITLIST_UNIT_RETURN, "offer_revoked", "left while offered"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_REVOKE, "CANCELLED",
	WAITLIST_UNIT_NONE, NULL, "left while offered"},

	/*
	 * The accept saga of an external booking service: the fan has accepted,
	 * the unit stays held and the entry OFFERED while the booking service is
	 * asked (once per attempt); it confirms, says the seat is gone, or the
	 * saga runs out of attempts or time.
	 */
	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_REQUEST_BOOKING, ACCEPTING,
	WAITLIST_UNIT_NONE, "booking_requested", "booking requested", WAITLIST_TO_BOOKING},
	{WAITLIST_ENTITY_OFFER, ACCEPTING, WAITLIST_EVENT_BOOKING_RETRY, ACCEPTING,
	WAITLIST_UNIT_NONE, "booking_requested", "booking retried", WAITLIST_TO_BOOKING},
	{WAITLIST_ENTITY_OFFER, ACCEPTING, WAITLIST_EVENT_BOOKING_CONFIRMED, "ACCEPTED",
	WAITLIST_UNIT_CONSUME, "offer_accepted", "booking confirmed"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_BOOKING_CONFIRMED, "ACCEPTED",
	WAITLIST_UNIT_NONE, NULL, "booking confirmed"},
	{WAITLIST_ENTITY_OFFER, ACCEPTING, WAITLIST_EVENT_BOOKING_FAILED, "FAILED",
	WAITLIST_UNIT_RETIRE, "offer_failed", "booking failed"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_BOOKING_FAILED, WAITING,
	WAITLIST_UNIT_NONE, NULL, "booking failed"},
	{WAITLIST_ENTITY_OFFER, ACCEPTING, WAITLIST_EVENT_BOOKING_EXHAUSTED, "EXPIRED",
	WAITLIST_UNIT_RETURN, "offer_expired", "booking exhausted"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_BOOKING_EXHAUSTED, "EXPIRED",
	WAITLIST_UNIT_NONE, NULL, "booking exhausted"},

	/* more time to answer: the deadline moves, the unit stays held */
	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_EXTEND, OPEN,
	WAITLIST_UNIT_NONE, "offer_extended", "extended"},

	/*
	 * Confirmed places: on a resource with confirm_within, a join holds a
	 * place (PENDING) that takes part in promotion once confirmed.
	 */
	{WAITLIST_ENTITY_ENTRY, NULL, WAITLIST_EVENT_JOIN_UNCONFIRMED, PENDING,
	WAITLIST_UNIT_NONE, "confirm_requested", "joined unconfirmed"},
	{WAITLIST_ENTITY_ENTRY, PENDING, WAITLIST_EVENT_CONFIRM, WAITING,
	WAITLIST_UNIT_NONE, NULL, "confirmed"},
	{WAITLIST_ENTITY_ENTRY, PENDING, WAITLIST_EVENT_LEAVE_UNCONFIRMED, "CANCELLED",
	WAITLIST_UNIT_NONE, NULL, "left"},
	{WAITLIST_ENTITY_ENTRY, PENDING, WAITLIST_EVENT_EXPIRE_UNCONFIRMED, "EXPIRED",
	WAITLIST_UNIT_NONE, NULL, "not_confirmed"},

	/* the offer cutoff: those still in line are told, and their entries end */
	{WAITLIST_ENTITY_ENTRY, WAITING, WAITLIST_EVENT_CLOSE, "EXPIRED",
	WAITLIST_UNIT_NONE, "waitlist_closed", "closed"},
	{WAITLIST_ENTITY_ENTRY, PENDING, WAITLIST_EVENT_CLOSE_UNCONFIRMED, "EXPIRED",
	WAITLIST_UNIT_NONE, "waitlist_closed", "closed"},

	/*
	 * Parallel offers: another fan took the unit this offer shared (it holds
	 * none of its own), and the fan goes back to their place in line.
	 */
	{WAITLIST_ENTITY_OFFER, OPEN, WAITLIST_EVENT_FILL, "REVOKED",
	WAITLIST_UNIT_NONE, "offer_revoked", "filled"},
	{WAITLIST_ENTITY_ENTRY, OFFERED, WAITLIST_EVENT_FILL, WAITING,
	WAITLIST_UNIT_NONE, NULL, "filled"},
};

const int	waitlist_rule_count = lengthof(waitlist_rules);

static const char *const entity_names[] = {"entry", "offer"};
static const char *const event_names[WAITLIST_EVENT_COUNT] = {
	"join", "promote", "leave", "accept", "booking_conflict", "decline",
	"expire", "revoke", "request_booking", "booking_retry", "booking_confirmed",
	"booking_failed", "booking_exhausted", "extend", "join_unconfirmed", "confirm",
	"leave_unconfirmed", "expire_unconfirmed", "close", "close_unconfirmed", "fill"
};
static const char *const unit_effect_names[] = {
	"none", "hold", "consume", "return", "retire"
};

const char *
waitlist_entity_name(WaitlistEntity entity)
{
	return entity_names[entity];
}

const char *
waitlist_event_name(WaitlistEvent event)
{
	return event_names[event];
}

const char *
waitlist_unit_effect_name(WaitlistUnitEffect unit)
{
	return unit_effect_names[unit];
}

/* The rule of an event for an entity; an event has at most one per entity. */
const WaitlistRule *
waitlist_find_rule(WaitlistEntity entity, WaitlistEvent event)
{
	int			i;

	for (i = 0; i < waitlist_rule_count; i++)
		if (waitlist_rules[i].entity == entity && waitlist_rules[i].event == event)
			return &waitlist_rules[i];
	return NULL;
}

/* A rule that moves the entity from from_state (NULL: created) to to_state. */
const WaitlistRule *
waitlist_rule_for_states(WaitlistEntity entity, const char *from_state,
						 const char *to_state)
{
	int			i;

	for (i = 0; i < waitlist_rule_count; i++)
	{
		const WaitlistRule *rule = &waitlist_rules[i];

		if (rule->entity != entity || strcmp(rule->to_state, to_state) != 0)
			continue;
		if (from_state == NULL ? rule->from_state == NULL :
			rule->from_state != NULL && strcmp(rule->from_state, from_state) == 0)
			return rule;
	}
	return NULL;
}

void
waitlist_illegal_transition(WaitlistEntity entity, int64 id,
							const char *from_state, const char *to_state)
{
	if (from_state == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_ILLEGAL_TRANSITION),
				 errmsg("waitlist %s %lld cannot be created in state %s",
						waitlist_entity_name(entity), (long long) id, to_state),
				 errdetail("The waitlist state machine creates no %s in that state.",
						   waitlist_entity_name(entity)),
				 errhint("Use the waitlist API; SELECT * FROM waitlist.state_machine() lists the transitions.")));
	ereport(ERROR,
			(errcode(ERRCODE_WAITLIST_ILLEGAL_TRANSITION),
			 errmsg("waitlist %s %lld cannot move from %s to %s",
					waitlist_entity_name(entity), (long long) id, from_state, to_state),
			 errdetail("The waitlist state machine has no transition from %s to %s.",
					   from_state, to_state),
			 errhint("Use the waitlist API; SELECT * FROM waitlist.state_machine() lists the transitions.")));
}

/* --- the statements ------------------------------------------------------ */

/*
 * Set while one of the engine's statements runs: the row guard lets its
 * rows through (their audit rows come with the statement) and the insert
 * guard of waitlist.transition lets its audit rows in.  No user code runs
 * inside those statements (the DDL guard refuses other triggers and rules
 * on the audited tables), so whatever the flag covers is the engine's own.
 */
static int	applying_depth = 0;

/* Set while waitlist_record_by_hand() writes the audit row of a change by hand. */
static int	recording_depth = 0;

/*
 * Set while waitlist_move_transitions() runs its one statement: the only
 * DELETE of waitlist.transition the append-only trigger lets through, and
 * the only INSERT into waitlist_archive.transition its insert guard does.
 */
static int	archiving_depth = 0;

bool
waitlist_engine_applying(void)
{
	return applying_depth > 0;
}

bool
waitlist_recording_by_hand(void)
{
	return recording_depth > 0;
}

bool
waitlist_archiving(void)
{
	return archiving_depth > 0;
}

/*
 * The channel this transaction's NOTIFY goes to once it commits (empty: no
 * NOTIFY), as set when it wrote its first outbox row.
 */
static char notify_at_commit[NAMEDATALEN] = "";

/*
 * A statement wrote outbox rows: wake the relays listening on
 * waitlist.notify_channel once the transaction commits.  NOTIFY takes a
 * global lock at commit, so it is off by default.  It is queued only at
 * pre-commit: PREPARE TRANSACTION refuses a transaction that has queued one.
 */
static void
outbox_written(void)
{
	if (notify_at_commit[0] != '\0' || waitlist_notify_channel == NULL)
		return;
	strlcpy(notify_at_commit, waitlist_notify_channel, sizeof(notify_at_commit));
}

/* Pre-commit of a transaction that wrote outbox rows: queue its NOTIFY. */
void
waitlist_outbox_at_pre_commit(void)
{
	if (notify_at_commit[0] != '\0')
		Async_Notify(notify_at_commit, NULL);
	notify_at_commit[0] = '\0';
}

/*
 * Transaction end, PREPARE included: a prepared transaction's rows reach
 * the relays through their polls.
 */
void
waitlist_outbox_at_xact_end(void)
{
	notify_at_commit[0] = '\0';
}

/*
 * Run a statement that handles about "rows" rows (negative: not known; see
 * waitlist_execute_rows()) with one of the flags above raised.
 */
static void
execute_flagged(int *depth, WaitlistPlan *plan, int64 rows, Datum *values,
				const char *nulls)
{
	(*depth)++;
	PG_TRY();
	{
		(void) waitlist_execute_rows(plan, rows, values, nulls);
	}
	PG_FINALLY();
	{
		(*depth)--;
	}
	PG_END_TRY();
}

/* Run one of the engine's statements. */
static void
apply(WaitlistPlan *plan, int64 rows, Datum *values, const char *nulls)
{
	execute_flagged(&applying_depth, plan, rows, values, nulls);
}

static int64
first_int8(bool *isnull)
{
	if (SPI_processed != 1)
		elog(ERROR, "engine statement returned %llu rows",
			 (unsigned long long) SPI_processed);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, isnull));
}

static const WaitlistRule *
rule_of(WaitlistEntity entity, WaitlistEvent event)
{
	const WaitlistRule *rule = waitlist_find_rule(entity, event);

	if (rule == NULL)
		elog(ERROR, "the state machine has no %s rule for event %s",
			 waitlist_entity_name(entity), waitlist_event_name(event));
	return rule;
}

static char *
sql_literal(const char *s)
{
	return s == NULL ? "NULL::pg_catalog.text" : quote_literal_cstr(s);
}

/*
 * The rule version a transition is decided under: the resource's (1.1), or
 * the one 1.0 had.
 */
#define RESOURCE_RULE_VERSION_SQL \
	"(SELECT rv.rule_version FROM waitlist.resource rv" \
	" WHERE rv.resource_id OPERATOR(pg_catalog.=) $1)"

static const char *
rule_version_sql(bool ranked)
{
	return ranked ? RESOURCE_RULE_VERSION_SQL : "'" WAITLIST_RULE_VERSION "'::pg_catalog.text";
}

/*
 * The line's order, over an alias of waitlist.entry rows (or rows returned
 * from them): rank_key (1.1) or priority, then arrival.
 */
static const char *
line_order(bool ranked, const char *alias)
{
	return psprintf(ranked ? "%s.rank_key DESC, %s.seq" : "%s.priority DESC, %s.seq",
					alias, alias);
}

/*
 * The INSERT of the audit rows of one rule, as a CTE body: one row per row
 * of "source" (which has the column id_column), in the order given (none
 * for a single row).  $1 is the resource id; the actor is parameter
 * actor_param.
 */
static void
append_audit_rows_because(StringInfo buf, const WaitlistRule *rule, const char *reason_sql,
						  const char *source, const char *id_column, const char *order_by,
						  int actor_param, bool ranked)
{
	appendStringInfo(buf,
					 "SELECT %s, %s, $1, %s, %s, %s, %s, $%d::pg_catalog.name FROM %s",
					 sql_literal(waitlist_entity_name(rule->entity)), id_column,
					 sql_literal(rule->from_state), sql_literal(rule->to_state),
					 reason_sql, rule_version_sql(ranked), actor_param, source);
	if (order_by != NULL)
		appendStringInfo(buf, " ORDER BY %s", order_by);
}

/* The same, with the rule's own reason. */
static void
append_audit_rows(StringInfo buf, const WaitlistRule *rule, const char *source,
				  const char *id_column, const char *order_by, int actor_param,
				  bool ranked)
{
	append_audit_rows_because(buf, rule, sql_literal(rule->reason), source, id_column,
							  order_by, actor_param, ranked);
}

/*
 * The one writer of outbox rows, as a CTE body: one row per offer of
 * "source" (columns offer_id, entry_id, user_id, expires_at) and channel of
 * the rule's audience: each of the resource's channels for the fan, the
 * channel 'booking' for the booking service.  A booking request carries
 * the saga's key, attempt and deadline (source columns idempotency_key,
 * booking_attempts, booking_deadline), and is deliverable no sooner than
 * not_before.  With "party" the payload says how many units an offer of
 * more than one holds (source column units).  Keys whose value is NULL are
 * left out of the payload.  The token is computed once per offer, whatever
 * the number of channels.
 */
static void
append_outbox_rows_of(StringInfo buf, const WaitlistRule *rule, const char *source,
					  const char *reservation_ref, const char *detail, const char *token,
					  const char *not_before, bool party)
{
	bool		booking = rule->audience == WAITLIST_TO_BOOKING;

	appendStringInfo(buf,
					 "INSERT INTO waitlist.outbox"
					 " (resource_id, entry_id, offer_id, user_id, channel, event_type, payload,"
					 "  next_attempt_at)"
					 " SELECT $1, s.entry_id, s.offer_id, s.user_id, ch.channel, %s,"
					 "   pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
					 "     'resource_id', $1, 'entry_id', s.entry_id, 'offer_id', s.offer_id,"
					 "     'user_id', s.user_id, 'expires_at', s.expires_at,"
					 "     'reservation_ref', %s, 'detail', %s, 'token', s.token%s%s)),"
					 "   %s"
					 " FROM (SELECT s.*, %s AS token FROM %s s) s",
					 sql_literal(rule->outbox_event), reservation_ref, detail,
					 booking ? ", 'idempotency_key', s.idempotency_key,"
					 " 'attempt', s.booking_attempts, 'deadline', s.booking_deadline" : "",
					 party ? ", 'quantity', NULLIF(s.units, 1)" : "",
					 not_before ? not_before : "pg_catalog.now()", token, source);
	if (booking)
		appendStringInfoString(buf, " CROSS JOIN (VALUES ('booking'::pg_catalog.text)) AS ch(channel)"
							   " ORDER BY s.offer_id");
	else
		appendStringInfoString(buf,
							   "   CROSS JOIN waitlist.resource r"
							   "   CROSS JOIN LATERAL pg_catalog.unnest(r.channels) AS ch(channel)"
							   " WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
							   " ORDER BY s.offer_id, ch.channel");
}

/* The same, for rows of offers of one unit each, or of no offer. */
static void
append_outbox_rows(StringInfo buf, const WaitlistRule *rule, const char *source,
				   const char *reservation_ref, const char *detail, const char *token,
				   const char *not_before)
{
	append_outbox_rows_of(buf, rule, source, reservation_ref, detail, token, not_before, false);
}

/* The statement text, built once in a context that lives as long as the plan. */
static const char *
keep_sql(StringInfo buf)
{
	return MemoryContextStrdup(TopMemoryContext, buf->data);
}

/*
 * The predicate of the join's ON CONFLICT, which must imply that of the
 * one-active-entry index for the index to be inferred: 1.0's index covers
 * WAITING and OFFERED, 1.1's PENDING as well, and these two imply both.
 * A join that finds its fan PENDING, WAITING or OFFERED (1.1) conflicts.
 */
#define JOIN_CONFLICT_STATES "ARRAY['WAITING', 'OFFERED']"

/*
 * The name of the role a transition is recorded for: the API's caller, or
 * whoever changes a state by hand.
 */
static Datum
actor_datum(void)
{
	WaitlistApiCall *call = waitlist_current_call();

	return NameGetDatum(waitlist_role_name(call != NULL ? call->caller : GetUserId()));
}

/*
 * The join: read the resource and, unless it has a cap not yet checked
 * ($4 false), insert the entry with its audit row (1.1: PENDING with its
 * confirm_requested row where the resource wants confirmed places, ranked
 * by its aging); a double tap conflicts on the one-active-entry index and
 * inserts nothing.  Returns (capped, new entry id or NULL, free_units); no
 * row for an unknown resource.
 */
static WaitlistPlan join_plans[2] = {
	{NULL, 5, {TEXTOID, TEXTOID, INT4OID, BOOLOID, NAMEOID}, WAITLIST_GENERIC_PLAN},
	{NULL, 6, {TEXTOID, TEXTOID, INT4OID, BOOLOID, NAMEOID, INT4OID}, WAITLIST_GENERIC_PLAN}
};

/*
 * The rank of a fan of priority "priority" placed now, on resource row
 * "r": aged, one point per aging_interval since the epoch subtracted, so
 * that later fans rank lower at every instant.
 */
#define RANK_NOW_SQL(priority) \
	"(" priority " OPERATOR(pg_catalog.-) CASE WHEN r.aging_interval IS NULL THEN 0::pg_catalog.float8" \
	" ELSE pg_catalog.date_part('epoch', pg_catalog.now())" \
	"      OPERATOR(pg_catalog./) pg_catalog.date_part('epoch', r.aging_interval) END)"

static void
build_join_sql(bool ranked)
{
	const WaitlistRule *rule = rule_of(WAITLIST_ENTITY_ENTRY, WAITLIST_EVENT_JOIN);
	const WaitlistRule *pending = rule_of(WAITLIST_ENTITY_ENTRY, WAITLIST_EVENT_JOIN_UNCONFIRMED);
	StringInfoData buf;

	initStringInfo(&buf);
	if (!ranked)
	{
		appendStringInfo(&buf,
						 "WITH r AS ("
						 "  SELECT max_waiting, free_units FROM waitlist.resource"
						 "  WHERE resource_id OPERATOR(pg_catalog.=) $1"
						 "), ins AS ("
						 "  INSERT INTO waitlist.entry (resource_id, user_id, priority, state)"
						 "  SELECT $1, $2, $3, %s FROM r WHERE r.max_waiting IS NULL OR $4"
						 "  ON CONFLICT (resource_id, user_id)"
						 "    WHERE state OPERATOR(pg_catalog.=) ANY (" JOIN_CONFLICT_STATES ") DO NOTHING"
						 "  RETURNING entry_id"
						 "), audited AS (" WAITLIST_AUDIT_INSERT,
						 sql_literal(rule->to_state));
		append_audit_rows(&buf, rule, "ins", "ins.entry_id", NULL, 5, false);
	}
	else
	{
		appendStringInfo(&buf,
						 "WITH r AS ("
						 "  SELECT max_waiting, free_units, aging_interval, confirm_within, max_party_size,"
						 "         closed_at IS NOT NULL OR offers_close_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
						 "           AS closed"
						 "  FROM waitlist.resource"
						 "  WHERE resource_id OPERATOR(pg_catalog.=) $1"
						 "), ins AS ("
						 "  INSERT INTO waitlist.entry (resource_id, user_id, priority, state, rank_key,"
						 "                              confirm_by, quantity)"
						 "  SELECT $1, $2, $3, CASE WHEN r.confirm_within IS NULL THEN %s ELSE %s END,"
						 "         " RANK_NOW_SQL("$3") ","
						 "         pg_catalog.now() OPERATOR(pg_catalog.+) r.confirm_within, $6"
						 "  FROM r WHERE (r.max_waiting IS NULL OR $4) AND r.closed IS NOT TRUE"
						 "    AND $6 OPERATOR(pg_catalog.<=) r.max_party_size"
						 "  ON CONFLICT (resource_id, user_id)"
						 "    WHERE state OPERATOR(pg_catalog.=) ANY (" JOIN_CONFLICT_STATES ") DO NOTHING"
						 "  RETURNING entry_id, user_id, state, confirm_by"
						 "), notified AS (",
						 sql_literal(rule->to_state), sql_literal(pending->to_state));
		/* the fan is asked to confirm, by the deadline of the place */
		append_outbox_rows(&buf, pending,
						   psprintf("(SELECT i.entry_id, NULL::pg_catalog.int8 AS offer_id, i.user_id,"
									" i.confirm_by AS expires_at FROM ins i"
									" WHERE i.state OPERATOR(pg_catalog.=) %s)",
									sql_literal(pending->to_state)),
						   "NULL::pg_catalog.text", "NULL::pg_catalog.text", "NULL::pg_catalog.text", NULL);
		appendStringInfoString(&buf, "), audited AS (" WAITLIST_AUDIT_INSERT "(");
		append_audit_rows(&buf, rule,
						  psprintf("ins WHERE ins.state OPERATOR(pg_catalog.=) %s",
								   sql_literal(rule->to_state)),
						  "ins.entry_id", NULL, 5, true);
		appendStringInfoString(&buf, ") UNION ALL (");
		append_audit_rows(&buf, pending,
						  psprintf("ins WHERE ins.state OPERATOR(pg_catalog.=) %s",
								   sql_literal(pending->to_state)),
						  "ins.entry_id", NULL, 5, true);
		appendStringInfoString(&buf, ")");
	}
	appendStringInfo(&buf,
					 ") SELECT r.max_waiting IS NOT NULL, (SELECT entry_id FROM ins), r.free_units, %s FROM r",
					 ranked ? "r.closed IS TRUE, r.confirm_within IS NOT NULL, r.max_party_size" : "false");
	join_plans[ranked].sql = keep_sql(&buf);
}

/* The resource's line has closed (its offers_close_at has passed). */
void
waitlist_refuse_closed(text *resource_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_WAITLIST_CLOSED),
			 errmsg("waitlist for resource \"%s\" is closed", text_to_cstring(resource_id)),
			 errdetail("No offers are made after the resource's offers_close_at.")));
}

/* A party larger than the resource takes. */
static void
refuse_party(text *resource_id, int32 quantity, int32 max_party_size)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("a party of %d is larger than waitlist resource \"%s\" takes",
					quantity, text_to_cstring(resource_id)),
			 errdetail("The resource's max_party_size is %d.", max_party_size),
			 errhint("Join with a smaller quantity, or raise max_party_size with waitlist_alter_resource().")));
}

/*
 * Join a fan for a party of "quantity" (1.0: always one): returns the new
 * entry's id, or -1 if the fan has an active entry already or the resource
 * has a cap and cap_checked is false (then *capped is true), or -2 if the
 * resource's line is closed (the fan may be in it already).  A party
 * larger than the resource's max_party_size is refused.  *free_units gets
 * the resource's free units.
 */
int64
waitlist_apply_join(text *resource_id, text *user_id, Datum priority, int32 quantity,
					bool cap_checked, bool *capped, int64 *free_units)
{
	bool		ranked = waitlist_schema_is_1_1();
	Datum		values[6];
	HeapTuple	row;
	TupleDesc	tupdesc;
	bool		isnull;
	Datum		d;

	if (join_plans[ranked].sql == NULL)
		build_join_sql(ranked);
	values[0] = PointerGetDatum(resource_id);
	values[1] = PointerGetDatum(user_id);
	values[2] = priority;
	values[3] = BoolGetDatum(cap_checked);
	values[4] = actor_datum();
	values[5] = Int32GetDatum(quantity);
	apply(&join_plans[ranked], 1, values, NULL);
	if (SPI_processed == 0)
		waitlist_resource_not_found(resource_id);
	row = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	*capped = DatumGetBool(SPI_getbinval(row, tupdesc, 1, &isnull));
	*free_units = DatumGetInt64(SPI_getbinval(row, tupdesc, 3, &isnull));
	d = SPI_getbinval(row, tupdesc, 2, &isnull);
	if (isnull)
	{
		if (DatumGetBool(SPI_getbinval(row, tupdesc, 4, &isnull)))
			return -2;
		if (ranked)
		{
			int32		max_party_size = DatumGetInt32(SPI_getbinval(row, tupdesc, 6, &isnull));

			if (quantity > max_party_size)
				refuse_party(resource_id, quantity, max_party_size);
		}
		return -1;
	}
	/* a place to confirm asked the fan, through the outbox */
	if (ranked && DatumGetBool(SPI_getbinval(row, tupdesc, 5, &isnull)))
		outbox_written();
	return DatumGetInt64(d);
}

/*
 * Moving entries of one resource ($2, an array of ids) by an event that
 * concerns no offer (a leave, a confirmation, an unconfirmed place let go):
 * those in the rule's from state move, with their audit rows.  $4 is the
 * new state.  A confirmation whose place counts from it ranks the entry as
 * if it joined now.  Returns the number moved.
 */
static WaitlistPlan entry_event_plans[2][WAITLIST_EVENT_COUNT];

static const char *
entry_changes(WaitlistEvent event)
{
	if (event == WAITLIST_EVENT_CONFIRM)
		return "SET state = $4, updated_at = pg_catalog.now(), confirmed_at = pg_catalog.now(),"
			" rank_key = CASE WHEN r.confirm_place_from OPERATOR(pg_catalog.=) 'confirm'"
			"   THEN " RANK_NOW_SQL("e.priority") " ELSE e.rank_key END,"
			" seq = CASE WHEN r.confirm_place_from OPERATOR(pg_catalog.=) 'confirm'"
			"   THEN pg_catalog.nextval('waitlist.entry_seq') ELSE e.seq END";
	return "SET state = $4, updated_at = pg_catalog.now()";
}

static void
build_entry_event_sql(WaitlistEvent event, bool ranked)
{
	const WaitlistRule *rule = rule_of(WAITLIST_ENTITY_ENTRY, event);
	WaitlistPlan *plan = &entry_event_plans[ranked][event];
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "WITH moved AS ("
					 "  UPDATE waitlist.entry e %s"
					 "  FROM waitlist.resource r"
					 "  WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
					 "    AND e.resource_id OPERATOR(pg_catalog.=) $1"
					 "    AND e.entry_id OPERATOR(pg_catalog.=) ANY ($2)"
					 "    AND e.state OPERATOR(pg_catalog.=) %s"
					 "  RETURNING e.entry_id, e.user_id"
					 ")",
					 entry_changes(event), sql_literal(rule->from_state));
	if (rule->outbox_event != NULL)
	{
		appendStringInfoString(&buf, ", notified AS (");
		append_outbox_rows(&buf, rule,
						   "(SELECT m.entry_id, NULL::pg_catalog.int8 AS offer_id, m.user_id,"
						   " NULL::pg_catalog.timestamptz AS expires_at FROM moved m)",
						   "NULL::pg_catalog.text", "NULL::pg_catalog.text", "NULL::pg_catalog.text", NULL);
		appendStringInfoString(&buf, ")");
	}
	appendStringInfoString(&buf, ", audited AS (" WAITLIST_AUDIT_INSERT);
	append_audit_rows(&buf, rule, "moved", "moved.entry_id", "moved.entry_id", 3, ranked);
	appendStringInfoString(&buf, ") SELECT pg_catalog.count(*) FROM moved");

	plan->nargs = 4;
	plan->argtypes[0] = TEXTOID;
	plan->argtypes[1] = INT8ARRAYOID;
	plan->argtypes[2] = NAMEOID;
	plan->argtypes[3] = TEXTOID;
	plan->plan_mode = WAITLIST_CUSTOM_PLAN;
	plan->sql = keep_sql(&buf);
}

int64
waitlist_apply_entry_event(WaitlistEvent event, text *resource_id, Datum entry_ids)
{
	bool		ranked = waitlist_schema_is_1_1();
	WaitlistPlan *plan = &entry_event_plans[ranked][event];
	ArrayType  *ids = DatumGetArrayTypeP(entry_ids);
	Datum		values[4];
	bool		isnull;
	int64		moved;

	if (plan->sql == NULL)
		build_entry_event_sql(event, ranked);
	values[0] = PointerGetDatum(resource_id);
	values[1] = entry_ids;
	values[2] = actor_datum();
	values[3] = CStringGetTextDatum(rule_of(WAITLIST_ENTITY_ENTRY, event)->to_state);
	apply(plan, ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)), values, NULL);
	moved = first_int8(&isnull);
	if (moved > 0 && rule_of(WAITLIST_ENTITY_ENTRY, event)->outbox_event != NULL)
		outbox_written();
	return moved;
}

/*
 * One entry leaves (event: from WAITING or from PENDING).  Returns false if
 * it was not in that state (any more).
 */
bool
waitlist_apply_leave(WaitlistEvent event, text *resource_id, int64 entry_id)
{
	Datum		id = Int64GetDatum(entry_id);

	return waitlist_apply_entry_event(event, resource_id,
									  PointerGetDatum(construct_array(&id, 1, INT8OID, sizeof(int64),
																	  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE))) > 0;
}

/*
 * A change of a resource's ordering rules: its rule version is bumped (the
 * rules' name, aged or not, and the next number) and the change audited as
 * a transition of the resource, decided under the new version.  The caller
 * has written the new rules.  Returns the new version.
 */
static WaitlistPlan rule_change_plan = {
	"WITH old AS ("
	"  SELECT rule_version FROM waitlist.resource WHERE resource_id OPERATOR(pg_catalog.=) $1"
	"), bumped AS ("
	"  UPDATE waitlist.resource r"
	"  SET rule_version = (CASE WHEN r.aging_interval IS NULL THEN 'priority-fifo/' ELSE 'priority-aging/' END)"
	"      OPERATOR(pg_catalog.||) (pg_catalog.split_part(o.rule_version, '/', 2)::pg_catalog.int4"
	"                               OPERATOR(pg_catalog.+) 1)::pg_catalog.text,"
	"      updated_at = pg_catalog.now()"
	"  FROM old o WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
	"  RETURNING r.rule_version AS new_version, o.rule_version AS old_version"
	"), audited AS (" WAITLIST_AUDIT_INSERT
	"  SELECT 'resource', pg_catalog.split_part(b.new_version, '/', 2)::pg_catalog.int8, $1,"
	"         b.old_version, b.new_version, $2, b.new_version, $3 FROM bumped b"
	") SELECT new_version FROM bumped",
	3, {TEXTOID, TEXTOID, NAMEOID}
};

/*
 * Units no offer may be made of any more (the offer cutoff) go back to the
 * booking system: out of free_units into units_returned, with a
 * capacity_returned row on channel 'booking' saying how many and why.
 */
static WaitlistPlan return_units_plan = {
	"WITH returned AS ("
	"  UPDATE waitlist.resource"
	"  SET free_units = free_units OPERATOR(pg_catalog.-) $2,"
	"      units_returned = units_returned OPERATOR(pg_catalog.+) $2,"
	"      updated_at = pg_catalog.now()"
	"  WHERE resource_id OPERATOR(pg_catalog.=) $1 AND free_units OPERATOR(pg_catalog.>=) $2"
	"  RETURNING offers_close_at"
	") INSERT INTO waitlist.outbox (resource_id, channel, event_type, payload)"
	"  SELECT $1, 'booking', 'capacity_returned',"
	"         pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
	"           'resource_id', $1, 'quantity', $2, 'offers_close_at', r.offers_close_at,"
	"           'detail', $3))"
	"  FROM returned r",
	3, {TEXTOID, INT8OID, TEXTOID}
};

void
waitlist_apply_return_units(text *resource_id, int64 quantity, const char *why)
{
	Datum		values[3];

	values[0] = PointerGetDatum(resource_id);
	values[1] = Int64GetDatum(quantity);
	values[2] = CStringGetTextDatum(why);
	waitlist_execute(&return_units_plan, values, NULL, false, 0);
	if (SPI_processed != 1)
		elog(ERROR, "could not return %lld units of waitlist resource \"%s\"",
			 (long long) quantity, text_to_cstring(resource_id));
	outbox_written();
}

char *
waitlist_apply_rule_change(text *resource_id, const char *reason)
{
	Datum		values[3];

	values[0] = PointerGetDatum(resource_id);
	values[1] = CStringGetTextDatum(reason);
	values[2] = actor_datum();
	apply(&rule_change_plan, 1, values, NULL);
	if (SPI_processed != 1)
		waitlist_resource_not_found(resource_id);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * The promotion step: pick the next waiters in line, move them on, make
 * one offer each with its outbox rows, write the audit rows of both, and
 * take the units from free_units ($3: the offers start a new wave).  SKIP
 * LOCKED passes over an entry that a concurrent leave holds; the LIMIT then
 * reaches one further down the line.  Returns the number of offers made and
 * the units they hold.
 *
 * From 1.1 on an offer holds its party's units: $2 units are offered, in
 * at most $5 offers, to the parties in line of at most $6 each.  The line
 * is taken in order as long as the parties fit, so a party that does not
 * fit stops it (strict: the head waits); skip_to_fit passes a smaller
 * $6 on later passes ($8: its audit rows say a party was passed over).
 * With a fanout $7 above one, each unit is offered to $7 fans at once,
 * parties of one each; their offers share a unit_id.
 */
static WaitlistPlan promote_plans[2] = {
	/* [false]: for a database whose schema (1.0) has no rank and no tokens yet */
	{NULL, 4, {TEXTOID, INT8OID, BOOLOID, NAMEOID}, WAITLIST_CUSTOM_PLAN},
	{NULL, 8, {TEXTOID, INT8OID, BOOLOID, NAMEOID, INT8OID, INT4OID, INT4OID, BOOLOID},
	WAITLIST_CUSTOM_PLAN}
};

/*
 * An offer's deadline, over the resource row "r": its offer_ttl, clamped as
 * the setting is bounded (no stored offer_ttl can overflow); from 1.1 on
 * never past offers_close_at, and with ttl_shrink a quarter of the time
 * left before it, but no less than min_offer_ttl.
 */
#define OFFER_DEADLINE_1_0_SQL \
	"pg_catalog.now() OPERATOR(pg_catalog.+) LEAST(r.offer_ttl," \
	" interval '" WAITLIST_MAX_SETTING_INTERVAL "')"
#define OFFER_DEADLINE_SQL \
	"LEAST(pg_catalog.now() OPERATOR(pg_catalog.+) LEAST(r.offer_ttl," \
	"        interval '" WAITLIST_MAX_SETTING_INTERVAL "'," \
	"        CASE WHEN r.ttl_shrink AND r.offers_close_at IS NOT NULL" \
	"             THEN GREATEST(coalesce(r.min_offer_ttl, interval '0')," \
	"                           (r.offers_close_at OPERATOR(pg_catalog.-) pg_catalog.now())" \
	"                           OPERATOR(pg_catalog./) 4) END)," \
	"      r.offers_close_at)"

/* the signed token of each offer of an outbox source */
#define OFFER_TOKEN_SQL "waitlist.offer_token_for($1, s.offer_id, s.expires_at)"

/*
 * The reason a promoted fan's audit row gives: on skip_to_fit's later
 * passes, whether a larger party still waits ahead of them.
 */
#define PASSED_OVER_REASON_SQL(promoted) \
	"CASE WHEN $8 AND EXISTS (SELECT 1 FROM waitlist.entry a" \
	"    WHERE a.resource_id OPERATOR(pg_catalog.=) $1 AND a.state OPERATOR(pg_catalog.=) 'WAITING'" \
	"      AND a.quantity OPERATOR(pg_catalog.>) $6" \
	"      AND (a.rank_key OPERATOR(pg_catalog.>) " promoted ".rank_key" \
	"           OR (a.rank_key OPERATOR(pg_catalog.=) " promoted ".rank_key" \
	"               AND a.seq OPERATOR(pg_catalog.<) " promoted ".seq)))" \
	"  THEN 'promoted past a larger party that did not fit'" \
	"  ELSE %s END"

/* 1.0's promotion: the next $2 waiters, one unit each */
static void
build_promote_sql_1_0(StringInfo buf)
{
	const WaitlistRule *entry = rule_of(WAITLIST_ENTITY_ENTRY, WAITLIST_EVENT_PROMOTE);
	const WaitlistRule *offer = rule_of(WAITLIST_ENTITY_OFFER, WAITLIST_EVENT_PROMOTE);

	appendStringInfo(buf,
					 "WITH picked AS ("
					 "  SELECT e.entry_id FROM waitlist.entry e"
					 "  WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
					 "    AND e.state OPERATOR(pg_catalog.=) %s"
					 "  ORDER BY %s"
					 "  LIMIT $2"
					 "  FOR UPDATE OF e SKIP LOCKED"
					 "), moved AS ("
	/* ids as an array: an index lookup whatever the row estimates say */
					 "  UPDATE waitlist.entry e SET state = %s, updated_at = pg_catalog.now()"
					 "  WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
					 "    AND e.entry_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT p.entry_id FROM picked p))"
					 "  RETURNING e.entry_id, e.user_id, e.priority, e.seq"
					 "), made AS ("
					 "  INSERT INTO waitlist.offer (entry_id, resource_id, user_id, state, expires_at)"
					 "  SELECT m.entry_id, $1, m.user_id, %s, " OFFER_DEADLINE_1_0_SQL
					 "  FROM moved m, waitlist.resource r"
					 "  WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
					 "  ORDER BY %s"
					 "  RETURNING offer_id, entry_id, user_id, expires_at"
					 "), notified AS (",
					 sql_literal(entry->from_state), line_order(false, "e"),
					 sql_literal(entry->to_state), sql_literal(offer->to_state),
					 line_order(false, "m"));
	append_outbox_rows(buf, offer, "made", "NULL::pg_catalog.text", "NULL::pg_catalog.text",
					   "NULL::pg_catalog.text", NULL);
	appendStringInfoString(buf, "), audited AS (" WAITLIST_AUDIT_INSERT "(");
	append_audit_rows(buf, entry, "moved", "moved.entry_id", line_order(false, "moved"), 4, false);
	appendStringInfoString(buf, ") UNION ALL (");
	append_audit_rows(buf, offer, "made", "made.offer_id", "made.offer_id", 4, false);
	appendStringInfoString(buf,
						   ")), counted AS ("
						   "  SELECT pg_catalog.count(*) AS offers, pg_catalog.count(*) AS units FROM made"
						   ")");
}

/*
 * 1.1's: parties in line order while they fit, each unit to $7 fans (group
 * grp), the offer_created rows carrying the offer's signed token (token.c
 * signs it with the key it reads once per transaction).
 */
static void
build_promote_sql_1_1(StringInfo buf)
{
	const WaitlistRule *entry = rule_of(WAITLIST_ENTITY_ENTRY, WAITLIST_EVENT_PROMOTE);
	const WaitlistRule *offer = rule_of(WAITLIST_ENTITY_OFFER, WAITLIST_EVENT_PROMOTE);

	appendStringInfo(buf,
					 "WITH candidates AS ("
					 "  SELECT e.entry_id, e.quantity, e.rank_key, e.seq FROM waitlist.entry e"
					 "  WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
					 "    AND e.state OPERATOR(pg_catalog.=) %s"
					 "    AND e.quantity OPERATOR(pg_catalog.<=) $6"
					 "  ORDER BY %s"
					 "  LIMIT $5"
					 "  FOR UPDATE OF e SKIP LOCKED"
					 "), picked AS ("
	/* the parties that fit, in line order: the first that does not ends it */
					 "  SELECT c.entry_id, c.quantity, (c.n OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) $7 AS grp"
					 "  FROM (SELECT c.entry_id, c.quantity,"
					 "               pg_catalog.row_number() OVER w AS n, pg_catalog.sum(c.quantity) OVER w AS upto"
					 "        FROM candidates c"
					 "        WINDOW w AS (ORDER BY %s ROWS UNBOUNDED PRECEDING)) c"
					 "  WHERE c.upto OPERATOR(pg_catalog.<=) ($2 OPERATOR(pg_catalog.*) $7)"
					 "), units AS ("
	/* one unit per group of fans; an id shared by the offers of a fanned-out one */
					 "  SELECT g.grp, g.units,"
					 "         CASE WHEN $7 OPERATOR(pg_catalog.>) 1"
					 "              THEN pg_catalog.nextval('waitlist.offer_unit_seq') END AS unit_id"
					 "  FROM (SELECT p.grp, pg_catalog.max(p.quantity) AS units FROM picked p GROUP BY p.grp) g"
					 "), moved AS ("
	/* ids as an array: an index lookup whatever the row estimates say */
					 "  UPDATE waitlist.entry e SET state = %s, updated_at = pg_catalog.now()"
					 "  WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
					 "    AND e.entry_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT p.entry_id FROM picked p))"
					 "  RETURNING e.entry_id, e.user_id, e.priority, e.seq, e.rank_key, e.quantity"
					 "), made AS ("
	/*
	 * Each moved entry's group is its place among them (the same line order
	 * as picked's), its unit the group's element of an array of units: no
	 * join of the CTEs, which with the estimates of a line that just grew
	 * (one row each) became a nested loop, rows times rows.
	 */
					 "  INSERT INTO waitlist.offer (entry_id, resource_id, user_id, state, expires_at, units, unit_id)"
					 "  SELECT m.entry_id, $1, m.user_id, %s, " OFFER_DEADLINE_SQL ", m.quantity,"
					 "         (SELECT pg_catalog.array_agg(u.unit_id ORDER BY u.grp) FROM units u)"
					 "           [m.grp OPERATOR(pg_catalog.+) 1]"
					 "  FROM (SELECT m.entry_id, m.user_id, m.quantity, m.rank_key, m.seq,"
					 "               (pg_catalog.row_number() OVER (ORDER BY %s) OPERATOR(pg_catalog.-) 1)"
					 "                 OPERATOR(pg_catalog./) $7 AS grp"
					 "        FROM moved m) m"
					 "  CROSS JOIN waitlist.resource r"
					 "  WHERE r.resource_id OPERATOR(pg_catalog.=) $1"
					 "  ORDER BY %s"
					 "  RETURNING offer_id, entry_id, user_id, expires_at, units"
					 "), notified AS (",
					 sql_literal(entry->from_state), line_order(true, "e"), line_order(true, "c"),
					 sql_literal(entry->to_state), sql_literal(offer->to_state),
					 line_order(true, "m"), line_order(true, "m"));
	append_outbox_rows_of(buf, offer, "made", "NULL::pg_catalog.text", "NULL::pg_catalog.text",
						  OFFER_TOKEN_SQL, NULL, true);
	appendStringInfoString(buf, "), audited AS (" WAITLIST_AUDIT_INSERT "(");
	append_audit_rows_because(buf, entry,
							  psprintf(PASSED_OVER_REASON_SQL("moved"), sql_literal(entry->reason)),
							  "moved", "moved.entry_id", line_order(true, "moved"), 4, true);
	appendStringInfoString(buf, ") UNION ALL (");
	append_audit_rows(buf, offer, "made", "made.offer_id", "made.offer_id", 4, true);
	appendStringInfoString(buf,
						   ")), counted AS ("
						   "  SELECT (SELECT pg_catalog.count(*) FROM made) AS offers,"
						   "         (SELECT coalesce(pg_catalog.sum(u.units), 0) FROM units u) AS units"
						   ")");
}

static void
build_promote_sql(bool ranked)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (ranked)
		build_promote_sql_1_1(&buf);
	else
		build_promote_sql_1_0(&buf);
	appendStringInfoString(&buf,
						   ", spent AS ("
						   "  UPDATE waitlist.resource r"
						   "  SET free_units = r.free_units OPERATOR(pg_catalog.-) c.units,"
						   "      updated_at = pg_catalog.now(),"
						   "      wave_started_at = CASE WHEN $3 THEN pg_catalog.now() ELSE r.wave_started_at END,"
						   "      wave_offers = CASE WHEN $3 THEN c.offers"
						   "                         ELSE r.wave_offers OPERATOR(pg_catalog.+) c.offers END"
						   "  FROM counted c"
						   "  WHERE r.resource_id OPERATOR(pg_catalog.=) $1 AND c.offers OPERATOR(pg_catalog.>) 0"
						   ") SELECT offers, units FROM counted");
	promote_plans[ranked].sql = keep_sql(&buf);
}

/*
 * Make the offers of one promotion step; the caller holds the resource's
 * lock.  Returns the number of offers made; *units_spent gets the units
 * they hold.
 */
int64
waitlist_apply_promote(text *resource_id, const WaitlistPromotion *promotion,
					   int64 *units_spent)
{
	bool		ranked = waitlist_schema_is_1_1();
	Datum		values[8];
	bool		isnull;
	int64		offers;

	if (promote_plans[ranked].sql == NULL)
		build_promote_sql(ranked);
	values[0] = PointerGetDatum(resource_id);
	/* 1.0: one unit per offer, as many as both bounds allow */
	values[1] = Int64GetDatum(ranked ? promotion->units :
							  Min(promotion->units, promotion->max_offers));
	values[2] = BoolGetDatum(promotion->new_wave);
	values[3] = actor_datum();
	values[4] = Int64GetDatum(promotion->max_offers);
	values[5] = Int32GetDatum(promotion->max_quantity);
	values[6] = Int32GetDatum(promotion->fanout);
	values[7] = BoolGetDatum(promotion->passing_over);
	apply(&promote_plans[ranked], promotion->max_offers, values, NULL);
	offers = first_int8(&isnull);
	*units_spent = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull));
	if (offers > 0)
		outbox_written();
	return offers;
}

/*
 * Changing offers of one resource ($2, an array of ids) by an event: the
 * offers in the rule's from state and their entries move as the event's
 * rules say, each offer gets its outbox rows ($3 reservation_ref and $5
 * detail go in the payload), both get their audit rows, and a unit the
 * rule returns goes back to free_units.  Offers in another state are left
 * alone.  Returns the number changed.  One plan per event; $7 is the
 * event's interval, $8 the base of the booking retries' backoff, $9 the
 * offer's new state.
 */
static WaitlistPlan offer_event_plans[2][WAITLIST_EVENT_COUNT];

/*
 * What an event changes on the offer besides its state.  A settlement
 * records when the fan decided (for a saga: when they accepted), the
 * reservation and the key; only the saga's events and an extension touch
 * the columns of 1.1, so that the others run on a 1.0 schema too.
 */
static const char *
offer_changes(WaitlistEvent event)
{
	switch (event)
	{
		case WAITLIST_EVENT_REQUEST_BOOKING:
			return "SET state = $9, decided_at = pg_catalog.now(), idempotency_key = $4, booking_attempts = 1,"
				" booking_deadline = pg_catalog.now() OPERATOR(pg_catalog.+) $7";
		case WAITLIST_EVENT_BOOKING_RETRY:
			return "SET state = $9, booking_attempts = o.booking_attempts OPERATOR(pg_catalog.+) 1";
		case WAITLIST_EVENT_EXTEND:
			return "SET state = $9, expires_at = o.expires_at OPERATOR(pg_catalog.+) $7,"
				" extended_by = o.extended_by OPERATOR(pg_catalog.+) $7";
		default:
			return "SET state = $9, decided_at = coalesce(o.decided_at, pg_catalog.now()),"
				" reservation_ref = $3, idempotency_key = coalesce($4, o.idempotency_key)";
	}
}

/*
 * The units settled offers give back (1.1): a party's offer all of its
 * own, and a fanned-out unit once, when none of its other offers still
 * holds it or took it.  The caller holds the resource's row, so settlements
 * of one unit's offers come one after the other, each seeing the last.
 */
#define RETURNED_UNITS_SQL \
	"SELECT coalesce(pg_catalog.sum(s.units) FILTER (WHERE s.unit_id IS NULL), 0)" \
	"       OPERATOR(pg_catalog.+)" \
	"       (SELECT pg_catalog.count(DISTINCT f.unit_id) FROM settled f" \
	"        WHERE f.unit_id IS NOT NULL" \
	"          AND NOT EXISTS (SELECT 1 FROM waitlist.offer t" \
	"                          WHERE t.resource_id OPERATOR(pg_catalog.=) $1" \
	"                            AND t.unit_id OPERATOR(pg_catalog.=) f.unit_id" \
	"                            AND t.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING', 'ACCEPTED', 'FAILED'])" \
	"                            AND t.offer_id OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT a.offer_id FROM settled a))))" \
	"       AS n" \
	" FROM settled s"

static void
build_offer_event_sql(WaitlistEvent event, bool ranked)
{
	const WaitlistRule *offer = rule_of(WAITLIST_ENTITY_OFFER, event);
	const WaitlistRule *entry = waitlist_find_rule(WAITLIST_ENTITY_ENTRY, event);
	bool		booking = offer->audience == WAITLIST_TO_BOOKING;
	WaitlistPlan *plan = &offer_event_plans[ranked][event];
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "WITH settled AS ("
					 "  UPDATE waitlist.offer o %s"
					 "  WHERE o.resource_id OPERATOR(pg_catalog.=) $1"
					 "    AND o.offer_id OPERATOR(pg_catalog.=) ANY ($2)"
					 "    AND o.state OPERATOR(pg_catalog.=) %s"
					 "  RETURNING o.offer_id, o.entry_id, o.user_id, o.expires_at%s%s"
					 ")",
					 offer_changes(event), sql_literal(offer->from_state),
					 booking ? ", o.idempotency_key, o.booking_attempts, o.booking_deadline" : "",
					 ranked ? ", o.units, o.unit_id" : "");
	if (entry != NULL)
		appendStringInfo(&buf,
						 ", moved AS ("
		/* ids as an array: an index lookup whatever the row estimates say */
						 "  UPDATE waitlist.entry e SET state = %s, updated_at = pg_catalog.now()"
						 "  WHERE e.resource_id OPERATOR(pg_catalog.=) $1"
						 "    AND e.state OPERATOR(pg_catalog.=) %s"
						 "    AND e.entry_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT s.entry_id FROM settled s))"
						 "  RETURNING e.entry_id, e.priority, e.seq%s"
						 ")",
						 sql_literal(entry->to_state), sql_literal(entry->from_state),
						 ranked ? ", e.rank_key" : "");
	appendStringInfoString(&buf, ", notified AS (");
	/* a retry waits out its backoff; the first request goes at once */
	append_outbox_rows(&buf, offer, "settled", "$3", "$5",
					   event == WAITLIST_EVENT_EXTEND ? OFFER_TOKEN_SQL : "NULL::pg_catalog.text",
					   event == WAITLIST_EVENT_BOOKING_RETRY ?
					   "LEAST(s.booking_deadline, pg_catalog.now() OPERATOR(pg_catalog.+) "
					   "(SELECT " WAITLIST_BACKOFF_SQL("$8", "10 minutes", "0.1", "s.offer_id::pg_catalog.text")
					   " FROM (SELECT s.booking_attempts OPERATOR(pg_catalog.-) 1 AS attempts) a))" : NULL);
	appendStringInfoString(&buf, "), audited AS (" WAITLIST_AUDIT_INSERT "(");
	append_audit_rows(&buf, offer, "settled", "settled.offer_id", "settled.offer_id", 6, ranked);
	if (entry != NULL)
	{
		appendStringInfoString(&buf, ") UNION ALL (");
		append_audit_rows(&buf, entry, "moved", "moved.entry_id", line_order(ranked, "moved"), 6,
						  ranked);
	}
	appendStringInfoString(&buf, "))");
	if (offer->unit == WAITLIST_UNIT_RETURN)
		appendStringInfo(&buf,
						 ", returned AS ("
						 "  UPDATE waitlist.resource r"
						 "  SET free_units = r.free_units OPERATOR(pg_catalog.+) c.n,"
						 "      updated_at = pg_catalog.now()"
						 "  FROM (%s) c"
						 "  WHERE r.resource_id OPERATOR(pg_catalog.=) $1 AND c.n OPERATOR(pg_catalog.>) 0"
						 ")",
						 ranked ? RETURNED_UNITS_SQL : "SELECT pg_catalog.count(*) AS n FROM settled");
	appendStringInfoString(&buf, " SELECT pg_catalog.count(*) FROM settled");

	plan->nargs = 9;
	plan->argtypes[0] = TEXTOID;
	plan->argtypes[1] = INT8ARRAYOID;
	plan->argtypes[2] = TEXTOID;
	plan->argtypes[3] = TEXTOID;
	plan->argtypes[4] = TEXTOID;
	plan->argtypes[5] = NAMEOID;
	plan->argtypes[6] = INTERVALOID;
	plan->argtypes[7] = INT4OID;
	plan->argtypes[8] = TEXTOID;
	plan->plan_mode = WAITLIST_CUSTOM_PLAN;
	plan->sql = keep_sql(&buf);
}

/*
 * Change the given offers of a resource by an event; the caller holds the
 * resource's lock if the event returns units, and then promotes them
 * (waitlist_settle_offers() does both).  Returns the number changed.
 */
int64
waitlist_apply_offer_event(WaitlistEvent event, text *resource_id, Datum offer_ids,
						   const WaitlistOfferChange *change)
{
	bool		ranked = waitlist_schema_is_1_1();
	WaitlistPlan *plan = &offer_event_plans[ranked][event];
	ArrayType  *ids = DatumGetArrayTypeP(offer_ids);
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		settled;

	if (plan->sql == NULL)
		build_offer_event_sql(event, ranked);
	values[0] = PointerGetDatum(resource_id);
	values[1] = offer_ids;
	values[2] = change->reservation_ref ? CStringGetTextDatum(change->reservation_ref) : (Datum) 0;
	nulls[2] = change->reservation_ref ? ' ' : 'n';
	values[3] = PointerGetDatum(change->idempotency_key);
	nulls[3] = change->idempotency_key ? ' ' : 'n';
	values[4] = change->detail ? CStringGetTextDatum(change->detail) : (Datum) 0;
	nulls[4] = change->detail ? ' ' : 'n';
	values[5] = actor_datum();
	values[6] = PointerGetDatum(change->interval);
	nulls[6] = change->interval ? ' ' : 'n';
	values[7] = Int32GetDatum(waitlist_outbox_retry_base_ms);
	values[8] = CStringGetTextDatum(rule_of(WAITLIST_ENTITY_OFFER, event)->to_state);
	apply(plan, ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)), values, nulls);
	settled = first_int8(&isnull);
	if (settled > 0)
		outbox_written();
	return settled;
}

/* --- changes by hand ----------------------------------------------------- */

static WaitlistPlan by_hand_plan = {
	WAITLIST_AUDIT_INSERT "VALUES ($1, $2, $3, $4, $5, 'manual', $7, $6)",
	7, {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, NAMEOID, TEXTOID}
};

/* the rule version of a resource (1.1), read as the extension owner */
static WaitlistPlan rule_version_plan = {
	"SELECT rule_version FROM waitlist.resource WHERE resource_id OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/*
 * The rule version a change by hand is recorded under: the resource's, which
 * the one making the change need not be allowed to read.
 */
static Datum
rule_version_of(Datum resource_id)
{
	Oid			user;
	int			sec_context;
	char	   *volatile version = NULL;

	if (!waitlist_schema_is_1_1())
		return CStringGetTextDatum(WAITLIST_RULE_VERSION);
	GetUserIdAndSecContext(&user, &sec_context);
	SetUserIdAndSecContext(waitlist_owner(), sec_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		waitlist_execute(&rule_version_plan, &resource_id, NULL, true, 1);
		if (SPI_processed == 1)
			version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(user, sec_context);
	}
	PG_END_TRY();
	return CStringGetTextDatum(version ? version : WAITLIST_RULE_VERSION);
}

/*
 * Write the audit row of a state change made by hand (the row guard has
 * checked it against the state machine), as 'manual', by whoever made it.
 * It runs inside the changing statement, in the caller's session: its SQL
 * names everything by schema, and the path is pinned while it is planned.
 */
void
waitlist_record_by_hand(WaitlistEntity entity, int64 id, Datum resource_id,
						const char *from_state, const char *to_state)
{
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			nestlevel;

	values[0] = CStringGetTextDatum(waitlist_entity_name(entity));
	values[1] = Int64GetDatum(id);
	values[2] = resource_id;
	values[3] = from_state ? CStringGetTextDatum(from_state) : (Datum) 0;
	nulls[3] = from_state ? ' ' : 'n';
	values[4] = CStringGetTextDatum(to_state);
	values[5] = NameGetDatum(waitlist_role_name(GetUserId()));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nestlevel = waitlist_pin_search_path();
	values[6] = rule_version_of(resource_id);
	execute_flagged(&recording_depth, &by_hand_plan, 1, values, nulls);
	AtEOXact_GUC(false, nestlevel);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
}

/*
 * Run the one statement of waitlist_archive() that moves rows of
 * waitlist.transition to waitlist_archive.transition: its DELETE is the
 * only one the append-only trigger allows, its INSERT the only one into the
 * archive.  The statement touches no other table, so no trigger but ours
 * (the DDL guard refuses others on both logs) runs while it is allowed.
 */
int64
waitlist_move_transitions(WaitlistPlan *plan, Datum *values, const char *nulls)
{
	execute_flagged(&archiving_depth, plan, -1, values, nulls);
	return (int64) SPI_processed;
}
