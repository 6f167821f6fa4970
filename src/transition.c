/*-------------------------------------------------------------------------
 *
 * transition.c
 *	  The audit trail: the one code path that records every state change of
 *	  an entry or an offer, and the guard that keeps the log append-only.
 *
 * State changes are plain INSERTs and UPDATEs of waitlist.entry and
 * waitlist.offer; statement-level AFTER triggers with transition tables turn
 * each statement's changes into transition rows with one set-based INSERT.
 * Because it is a trigger, no code path (nor a DBA's manual UPDATE) can change
 * a state without its audit row, and the row commits or aborts with the
 * change.  The API tells the trigger why (reason) and for whom (actor) through
 * the current WaitlistApiCall.
 *
 * IDENTIFICATION
 *	  src/transition.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "waitlist.h"

PG_FUNCTION_INFO_V1(waitlist_record_transitions);
PG_FUNCTION_INFO_V1(waitlist_transition_append_only);

/*
 * One statement per (table, event).  Within a statement, entries are logged
 * in line order and offers in creation order, so the log reads as the
 * promotion happened.  Operators are schema-qualified because a manual
 * UPDATE runs this under the caller's search_path.
 */
#define TRANSITION_COLUMNS \
	"INSERT INTO waitlist.transition (entity, entity_id, resource_id, from_state, to_state, reason, rule_version, actor) "

static WaitlistPlan entry_insert_plan = {
	TRANSITION_COLUMNS
	"SELECT 'entry', n.entry_id, n.resource_id, NULL, n.state, $1, $2, $3 "
	"FROM new_rows n ORDER BY n.priority DESC, n.seq",
	3, {TEXTOID, TEXTOID, NAMEOID}
};

static WaitlistPlan entry_update_plan = {
	TRANSITION_COLUMNS
	"SELECT 'entry', n.entry_id, n.resource_id, o.state, n.state, $1, $2, $3 "
	"FROM new_rows n JOIN old_rows o "
	"  ON o.entry_id OPERATOR(pg_catalog.=) n.entry_id "
	" AND o.resource_id OPERATOR(pg_catalog.=) n.resource_id "
	"WHERE o.state OPERATOR(pg_catalog.<>) n.state "
	"ORDER BY n.priority DESC, n.seq",
	3, {TEXTOID, TEXTOID, NAMEOID}, WAITLIST_CUSTOM_PLAN
};

static WaitlistPlan offer_insert_plan = {
	TRANSITION_COLUMNS
	"SELECT 'offer', n.offer_id, n.resource_id, NULL, n.state, $1, $2, $3 "
	"FROM new_rows n ORDER BY n.offer_id",
	3, {TEXTOID, TEXTOID, NAMEOID}
};

static WaitlistPlan offer_update_plan = {
	TRANSITION_COLUMNS
	"SELECT 'offer', n.offer_id, n.resource_id, o.state, n.state, $1, $2, $3 "
	"FROM new_rows n JOIN old_rows o "
	"  ON o.offer_id OPERATOR(pg_catalog.=) n.offer_id "
	" AND o.resource_id OPERATOR(pg_catalog.=) n.resource_id "
	"WHERE o.state OPERATOR(pg_catalog.<>) n.state "
	"ORDER BY n.offer_id",
	3, {TEXTOID, TEXTOID, NAMEOID}, WAITLIST_CUSTOM_PLAN
};

/*
 * AFTER INSERT / AFTER UPDATE statement trigger on waitlist.entry and
 * waitlist.offer; the trigger argument names the entity.
 */
Datum
waitlist_record_transitions(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	WaitlistApiCall *call = waitlist_current_call();
	WaitlistPlan *plan;
	bool		is_entry;
	const char *reason;
	Oid			actor;
	NameData	actor_name;
	Datum		values[3];
	int			rc;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "waitlist_record_transitions: must be fired as an AFTER statement trigger with one argument");

	is_entry = strcmp(trigdata->tg_trigger->tgargs[0], "entry") == 0;
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		plan = is_entry ? &entry_insert_plan : &offer_insert_plan;
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		plan = is_entry ? &entry_update_plan : &offer_update_plan;
	else
		elog(ERROR, "waitlist_record_transitions: fired for an unexpected event");

	/* A change made outside the API is recorded as manual, by whoever made it. */
	if (call != NULL && call->reason != NULL)
	{
		reason = call->reason;
		actor = call->caller;
	}
	else
	{
		reason = "manual";
		actor = GetUserId();
	}
	namestrcpy(&actor_name, GetUserNameFromId(actor, false));

	values[0] = CStringGetTextDatum(reason);
	values[1] = CStringGetTextDatum(WAITLIST_RULE_VERSION);
	values[2] = NameGetDatum(&actor_name);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	rc = SPI_execute_plan(waitlist_plan(plan), values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "recording transitions failed: %s", SPI_result_code_string(rc));
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	return PointerGetDatum(NULL);
}

/* BEFORE UPDATE OR DELETE (row) and BEFORE TRUNCATE trigger on waitlist.transition. */
Datum
waitlist_transition_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op = "change";

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "waitlist_transition_append_only: not called as a trigger");

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("waitlist.transition is append-only"),
			 errdetail("%s would rewrite the audit trail.", op)));
	PG_RETURN_NULL();
}
