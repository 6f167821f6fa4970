/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The guards of the audit trail: the row guard that checks every state
 *	  change of an entry or an offer against the state machine (and audits
 *	  one made by hand), the triggers that keep the log append-only, the
 *	  event trigger that refuses DDL weakening them, and the state machine
 *	  as SQL.
 *
 * The engine's statements write their own audit rows (transition.c); the
 * row guard lets their rows through once it has checked the move.  A
 * change by hand (a DBA's UPDATE) is refused with WL010 if the state
 * machine has no such move, and otherwise audited as 'manual' in the same
 * statement.  The guards fire ALWAYS (session_replication_role does not
 * silence them); a superuser in replica mode outside the engine is a
 * restore or a replication apply, whose rows arrive with their trail.
 *
 * IDENTIFICATION
 *	  src/guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(waitlist_guard_transition);
PG_FUNCTION_INFO_V1(waitlist_record_transitions);
PG_FUNCTION_INFO_V1(waitlist_transition_append_only);
PG_FUNCTION_INFO_V1(waitlist_transition_insert_guard);
PG_FUNCTION_INFO_V1(waitlist_audit_ddl_guard);
PG_FUNCTION_INFO_V1(waitlist_state_machine);

/* A superuser's change in replica mode, outside the engine: a restore. */
static bool
restoring(void)
{
	return SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA &&
		!waitlist_engine_applying() && superuser();
}

static Datum
row_value(HeapTuple tuple, TupleDesc tupdesc, const char *column, bool *isnull)
{
	int			attnum = SPI_fnumber(tupdesc, column);

	if (attnum <= 0)
		elog(ERROR, "column \"%s\" not found", column);
	return heap_getattr(tuple, attnum, tupdesc, isnull);
}

/* A text column of a row, as a C string; NULL if the value is NULL. */
static char *
row_text(HeapTuple tuple, TupleDesc tupdesc, const char *column)
{
	bool		isnull;
	Datum		d = row_value(tuple, tupdesc, column, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * The rank of an entry inserted without one (by hand, or restored from a
 * dump of 1.0): its priority, aged from its join as the resource ages.
 */
static WaitlistPlan entry_rank_plan = {
	"SELECT $2::pg_catalog.float8 OPERATOR(pg_catalog.-)"
	"       CASE WHEN r.aging_interval IS NULL THEN 0::pg_catalog.float8"
	"       ELSE pg_catalog.date_part('epoch', $3::pg_catalog.timestamptz)"
	"            OPERATOR(pg_catalog./) pg_catalog.date_part('epoch', r.aging_interval) END"
	" FROM waitlist.resource r WHERE r.resource_id OPERATOR(pg_catalog.=) $1",
	3, {TEXTOID, INT4OID, TIMESTAMPTZOID}
};

static HeapTuple
rank_entry(HeapTuple tuple, TupleDesc tupdesc)
{
	int			attnum = SPI_fnumber(tupdesc, "rank_key");
	bool		isnull;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	Datum		rank;
	bool		rank_isnull = false;
	int			nestlevel;
	char	   *state;

	if (attnum <= 0)
		return tuple;			/* a 1.0 schema: the line is ordered by priority */
	(void) heap_getattr(tuple, attnum, tupdesc, &isnull);
	state = row_text(tuple, tupdesc, "state");
	/* an entry that has left the line needs none */
	if (!isnull || state == NULL ||
		(strcmp(state, "PENDING") != 0 && strcmp(state, "WAITING") != 0 &&
		 strcmp(state, "OFFERED") != 0))
		return tuple;
	values[0] = row_value(tuple, tupdesc, "resource_id", &isnull);
	nulls[0] = isnull ? 'n' : ' ';
	values[1] = row_value(tuple, tupdesc, "priority", &isnull);
	nulls[1] = isnull ? 'n' : ' ';
	values[2] = row_value(tuple, tupdesc, "joined_at", &isnull);
	nulls[2] = isnull ? 'n' : ' ';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nestlevel = waitlist_pin_search_path();
	waitlist_execute(&entry_rank_plan, values, nulls, true, 1);
	if (SPI_processed == 1)
		rank = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &rank_isnull);
	else
		rank_isnull = true;		/* no such resource: the foreign key says so */
	AtEOXact_GUC(false, nestlevel);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	if (rank_isnull)
		return tuple;
	return heap_modify_tuple_by_cols(tuple, tupdesc, 1, &attnum, &rank, &rank_isnull);
}

/*
 * BEFORE INSERT and BEFORE UPDATE (WHEN the state changes) row trigger on
 * waitlist.entry and waitlist.offer (1.1); the trigger argument names the
 * entity.  An entry inserted without a rank gets one.  Every state a row is created in or moved to must be a
 * transition of the state machine.
 */
Datum
waitlist_guard_transition(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	WaitlistEntity entity;
	HeapTuple	newtuple;
	TupleDesc	tupdesc;
	char	   *from_state = NULL;
	char	   *to_state;
	bool		isnull;
	int64		id;
	Datum		resource_id;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "waitlist_guard_transition: must be fired as a BEFORE row trigger with one argument");
	entity = strcmp(trigdata->tg_trigger->tgargs[0], "entry") == 0 ?
		WAITLIST_ENTITY_ENTRY : WAITLIST_ENTITY_OFFER;
	tupdesc = RelationGetDescr(trigdata->tg_relation);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		newtuple = trigdata->tg_trigtuple;
		if (entity == WAITLIST_ENTITY_ENTRY)
			newtuple = rank_entry(newtuple, tupdesc);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		newtuple = trigdata->tg_newtuple;
	else
		elog(ERROR, "waitlist_guard_transition: fired for an unexpected event");

	if (restoring())
		return PointerGetDatum(newtuple);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		from_state = row_text(trigdata->tg_trigtuple, tupdesc, "state");

	to_state = row_text(newtuple, tupdesc, "state");
	if (to_state == NULL)
		return PointerGetDatum(newtuple);	/* the NOT NULL constraint says so */
	if (from_state != NULL && strcmp(from_state, to_state) == 0)
		return PointerGetDatum(newtuple);

	id = DatumGetInt64(row_value(newtuple, tupdesc,
								 entity == WAITLIST_ENTITY_ENTRY ? "entry_id" : "offer_id",
								 &isnull));
	if (waitlist_rule_for_states(entity, from_state, to_state) == NULL)
		waitlist_illegal_transition(entity, id, from_state, to_state);
	if (waitlist_engine_applying())
		return PointerGetDatum(newtuple);

	resource_id = row_value(newtuple, tupdesc, "resource_id", &isnull);
	if (isnull)
		return PointerGetDatum(newtuple);	/* NOT NULL refuses the row */
	waitlist_record_by_hand(entity, id, resource_id, from_state, to_state);
	return PointerGetDatum(newtuple);
}

/*
 * The audit trigger of schema 1.0 (AFTER statement triggers with
 * transition tables on waitlist.entry and waitlist.offer; 1.1 drops them),
 * kept for a database not yet updated: the engine's statements write their
 * own rows, so it records only changes made by hand, as 'manual'.
 */
static WaitlistPlan entry_insert_plan = {
	WAITLIST_AUDIT_INSERT
	"SELECT 'entry', n.entry_id, n.resource_id, NULL, n.state, 'manual', $1, $2 "
	"FROM new_rows n ORDER BY n.priority DESC, n.seq",
	2, {TEXTOID, NAMEOID}
};

static WaitlistPlan entry_update_plan = {
	WAITLIST_AUDIT_INSERT
	"SELECT 'entry', n.entry_id, n.resource_id, o.state, n.state, 'manual', $1, $2 "
	"FROM new_rows n JOIN old_rows o "
	"  ON o.entry_id OPERATOR(pg_catalog.=) n.entry_id "
	" AND o.resource_id OPERATOR(pg_catalog.=) n.resource_id "
	"WHERE o.state OPERATOR(pg_catalog.<>) n.state "
	"ORDER BY n.priority DESC, n.seq",
	2, {TEXTOID, NAMEOID}, WAITLIST_CUSTOM_PLAN
};

static WaitlistPlan offer_insert_plan = {
	WAITLIST_AUDIT_INSERT
	"SELECT 'offer', n.offer_id, n.resource_id, NULL, n.state, 'manual', $1, $2 "
	"FROM new_rows n ORDER BY n.offer_id",
	2, {TEXTOID, NAMEOID}
};

static WaitlistPlan offer_update_plan = {
	WAITLIST_AUDIT_INSERT
	"SELECT 'offer', n.offer_id, n.resource_id, o.state, n.state, 'manual', $1, $2 "
	"FROM new_rows n JOIN old_rows o "
	"  ON o.offer_id OPERATOR(pg_catalog.=) n.offer_id "
	" AND o.resource_id OPERATOR(pg_catalog.=) n.resource_id "
	"WHERE o.state OPERATOR(pg_catalog.<>) n.state "
	"ORDER BY n.offer_id",
	2, {TEXTOID, NAMEOID}, WAITLIST_CUSTOM_PLAN
};

Datum
waitlist_record_transitions(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	WaitlistPlan *plan;
	bool		is_entry;
	Datum		values[2];
	int			nestlevel;
	int			rc;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "waitlist_record_transitions: must be fired as an AFTER statement trigger with one argument");

	if (waitlist_engine_applying() || restoring())
		return PointerGetDatum(NULL);

	is_entry = strcmp(trigdata->tg_trigger->tgargs[0], "entry") == 0;
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		plan = is_entry ? &entry_insert_plan : &offer_insert_plan;
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		plan = is_entry ? &entry_update_plan : &offer_update_plan;
	else
		elog(ERROR, "waitlist_record_transitions: fired for an unexpected event");

	values[0] = CStringGetTextDatum(WAITLIST_RULE_VERSION);
	values[1] = NameGetDatum(waitlist_role_name(GetUserId()));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	nestlevel = waitlist_pin_search_path();
	rc = waitlist_execute(plan, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "recording transitions failed: %s", SPI_result_code_string(rc));
	AtEOXact_GUC(false, nestlevel);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	return PointerGetDatum(NULL);
}

/*
 * waitlist.state_machine() RETURNS SETOF (entity, from_state, event,
 * to_state, unit, outbox_event, reason): the transition table the engine
 * applies, for the documentation and for whoever must explain a state.
 */
Datum
waitlist_state_machine(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < waitlist_rule_count; i++)
	{
		const WaitlistRule *rule = &waitlist_rules[i];
		Datum		values[7];
		bool		nulls[7] = {0};

		values[0] = CStringGetTextDatum(waitlist_entity_name(rule->entity));
		nulls[1] = rule->from_state == NULL;
		values[1] = nulls[1] ? (Datum) 0 : CStringGetTextDatum(rule->from_state);
		values[2] = CStringGetTextDatum(waitlist_event_name(rule->event));
		values[3] = CStringGetTextDatum(rule->to_state);
		values[4] = CStringGetTextDatum(waitlist_unit_effect_name(rule->unit));
		nulls[5] = rule->outbox_event == NULL;
		values[5] = nulls[5] ? (Datum) 0 : CStringGetTextDatum(rule->outbox_event);
		values[6] = CStringGetTextDatum(rule->reason);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Whether a trigger of the audit trail fires on the archived log
 * (waitlist_archive.transition, trigger argument "archive", 1.1) rather
 * than the hot one (no argument, as 1.0 created them).
 */
static bool
fired_on_archive(TriggerData *trigdata)
{
	return trigdata->tg_trigger->tgnargs == 1 &&
		strcmp(trigdata->tg_trigger->tgargs[0], "archive") == 0;
}

/*
 * BEFORE UPDATE OR DELETE (row) and BEFORE TRUNCATE trigger on
 * waitlist.transition and (1.1) waitlist_archive.transition.
 */
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
	{
		/* waitlist_archive() moving hot rows to the archive */
		if (waitlist_archiving() && !fired_on_archive(trigdata) &&
			TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
			return PointerGetDatum(trigdata->tg_trigtuple);
		op = "DELETE";
	}
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s.%s is append-only",
					get_namespace_name(RelationGetNamespace(trigdata->tg_relation)),
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("%s would rewrite the audit trail.", op)));
	PG_RETURN_NULL();
}

/*
 * BEFORE INSERT statement trigger on waitlist.transition (1.1): rows come
 * from waitlist_record_transitions(), which alone decides what a row says
 * (actor, reason, at).  A role that may INSERT into the table, as one that
 * changes states by hand must, cannot forge rows with it.  Superusers may:
 * a restore COPYs the trail back as it was.
 */
Datum
waitlist_transition_insert_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		elog(ERROR, "waitlist_transition_insert_guard: must be fired by INSERT");

	if (!(fired_on_archive(trigdata) ? waitlist_archiving() :
		  waitlist_engine_applying() || waitlist_recording_by_hand()) &&
		!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rows of waitlist.transition are written only by the extension"),
				 errdetail("Each row records a state change of waitlist.entry or waitlist.offer, made through the API or by hand."),
				 errhint("Change the state of the entry or offer instead; its row is written for you.")));
	return PointerGetDatum(NULL);
}

/*
 * The tables whose rows the audit trail vouches for, and (1.1) the
 * archived log.
 */
static bool
is_audited_relation(Oid relid)
{
	Oid			nspid = get_namespace_oid("waitlist", true);
	Oid			archive_nspid = get_namespace_oid("waitlist_archive", true);
	Oid			relnsp;
	char	   *name;

	if (!OidIsValid(relid))
		return false;
	relnsp = get_rel_namespace(relid);
	name = get_rel_name(relid);
	if (name == NULL)
		return false;
	if (OidIsValid(nspid) && relnsp == nspid)
		return strcmp(name, "entry") == 0 || strcmp(name, "offer") == 0 ||
			strcmp(name, "transition") == 0;
	return OidIsValid(archive_nspid) && relnsp == archive_nspid &&
		strcmp(name, "transition") == 0;
}

static bool
is_audited_rangevar(RangeVar *rv)
{
	return rv != NULL && is_audited_relation(RangeVarGetRelid(rv, NoLock, true));
}

static bool
is_transition_rangevar(RangeVar *rv)
{
	return is_audited_rangevar(rv) && strcmp(rv->relname, "transition") == 0;
}

/* Whether a trigger of relid runs one of the extension's functions. */
static bool
is_extension_trigger(Oid relid, const char *trigname, Oid extoid)
{
	Relation	tgrel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		result = false;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	ScanKeyInit(&key[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(trigname));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL, 2, key);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Oid			funcid = ((Form_pg_trigger) GETSTRUCT(tuple))->tgfoid;

		result = getExtensionOfObject(ProcedureRelationId, funcid) == extoid;
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return result;
}

/*
 * What ALTER TABLE may still do to an audited table: how it is stored,
 * clustered, analyzed and replicated.  Anything else could silence a
 * guard (DISABLE TRIGGER, ENABLE REPLICA TRIGGER), rewrite logged values
 * (ALTER COLUMN ... TYPE ... USING), lose them (DROP COLUMN, SET UNLOGGED),
 * or make the extension's own statements mean something else.
 */
static bool
alter_table_cmd_allowed(AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_SetStatistics:
		case AT_SetOptions:
		case AT_ResetOptions:
		case AT_SetStorage:
		case AT_SetCompression:
		case AT_ClusterOn:
		case AT_DropCluster:
		case AT_SetTableSpace:
		case AT_SetRelOptions:
		case AT_ResetRelOptions:
		case AT_ReplaceRelOptions:
		case AT_ReplicaIdentity:
			return true;
		default:
			return false;
	}
}

/*
 * The function CREATE OR REPLACE FUNCTION would replace, if it exists and
 * is one of the extension's: replacing record_transitions() or
 * transition_append_only() with a function that does nothing would leave
 * every trigger in place and silence it.
 */
static bool
replaces_extension_function(CreateFunctionStmt *stmt, Oid extoid)
{
	Oid			argtypes[FUNC_MAX_ARGS];
	int			nargs = 0;
	ListCell   *lc;
	Oid			funcid;

	if (!stmt->replace)
		return false;
	foreach(lc, stmt->parameters)
	{
		FunctionParameter *fp = lfirst_node(FunctionParameter, lc);

		if (fp->mode == FUNC_PARAM_OUT || fp->mode == FUNC_PARAM_TABLE)
			continue;
		if (nargs >= FUNC_MAX_ARGS)
			return false;
		argtypes[nargs] = LookupTypeNameOid(NULL, fp->argType, true);
		if (!OidIsValid(argtypes[nargs]))
			return false;		/* no such type, so no such function */
		nargs++;
	}
	funcid = LookupFuncName(stmt->funcname, nargs, argtypes, true);
	return OidIsValid(funcid) &&
		getExtensionOfObject(ProcedureRelationId, funcid) == extoid;
}

static void
audit_ddl_refused(const char *what) pg_attribute_noreturn();

static void
audit_ddl_refused(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s would weaken the waitlist audit trail", what),
			 errdetail("waitlist.entry, waitlist.offer, waitlist.transition and waitlist_archive.transition are audited; their guards and logged values are changed only by the extension's own scripts."),
			 errhint("ALTER EXTENSION waitlist UPDATE changes them; storage, statistics and clustering settings may be changed at any time.")));
}

/*
 * ddl_command_start event trigger (1.1, ENABLE ALWAYS): refuses, before it
 * runs, DDL that would switch off or bypass the audit trail of the
 * audited tables, from any role, superusers included, except inside the
 * extension's own CREATE/ALTER EXTENSION script and pg_upgrade.
 */
Datum
waitlist_audit_ddl_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata = (EventTriggerData *) fcinfo->context;
	Node	   *stmt;
	Oid			extoid;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "waitlist_audit_ddl_guard: not fired by an event trigger");
	stmt = trigdata->parsetree;
	if (IsBinaryUpgrade)
		PG_RETURN_VOID();
	extoid = get_extension_oid("waitlist", true);
	if (creating_extension && CurrentExtensionObject == extoid)
		PG_RETURN_VOID();

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			{
				AlterTableStmt *ats = (AlterTableStmt *) stmt;
				bool		audited = is_audited_rangevar(ats->relation);

				foreach(lc, ats->cmds)
				{
					AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

					if (audited && !alter_table_cmd_allowed(cmd))
						audit_ddl_refused("this ALTER TABLE");
					/* a child's rows would read as logged rows */
					if ((cmd->subtype == AT_AddInherit || cmd->subtype == AT_AttachPartition) &&
						cmd->def != NULL && IsA(cmd->def, RangeVar) &&
						is_audited_rangevar((RangeVar *) cmd->def))
						audit_ddl_refused("inheriting from an audited table");
				}
			}
			break;
		case T_CreateStmt:
		case T_CreateForeignTableStmt:
			foreach(lc, ((CreateStmt *) stmt)->inhRelations)
			{
				if (is_audited_rangevar(lfirst_node(RangeVar, lc)))
					audit_ddl_refused("inheriting from an audited table");
			}
			break;
		case T_CreateTrigStmt:
			{
				CreateTrigStmt *cts = (CreateTrigStmt *) stmt;

				/* a BEFORE trigger could rewrite or drop rows of the log */
				if (is_transition_rangevar(cts->relation))
					audit_ddl_refused("a trigger on waitlist.transition");

				/*
				 * A trigger on an entry or offer runs inside the engine's
				 * statements, as the extension owner: a role granted TRIGGER
				 * would run its code with the owner's rights.
				 */
				if (!superuser() && is_audited_rangevar(cts->relation))
					audit_ddl_refused("a trigger on an audited table by a role other than a superuser");
				/* CREATE OR REPLACE TRIGGER could swap an audit trigger's function */
				if (cts->replace && is_audited_rangevar(cts->relation) &&
					is_extension_trigger(RangeVarGetRelid(cts->relation, NoLock, true),
										 cts->trigname, extoid))
					audit_ddl_refused("replacing a trigger of the audit trail");
			}
			break;
		case T_CreateFunctionStmt:
			if (replaces_extension_function((CreateFunctionStmt *) stmt, extoid))
				audit_ddl_refused("replacing a function of extension waitlist");
			break;
		case T_RuleStmt:
			if (is_audited_rangevar(((RuleStmt *) stmt)->relation))
				audit_ddl_refused("a rule on an audited table");
			break;
		case T_RenameStmt:
			if (is_audited_rangevar(((RenameStmt *) stmt)->relation))
				audit_ddl_refused("renaming an audited table, its columns or its triggers");
			break;
		case T_AlterObjectSchemaStmt:
			if (is_audited_rangevar(((AlterObjectSchemaStmt *) stmt)->relation))
				audit_ddl_refused("moving an audited table");
			break;
		case T_AlterExtensionContentsStmt:
			if (strcmp(((AlterExtensionContentsStmt *) stmt)->extname, "waitlist") == 0)
				audit_ddl_refused("changing the members of extension waitlist");
			break;
		case T_DropStmt:
			{
				DropStmt   *ds = (DropStmt *) stmt;

				if (ds->removeType != OBJECT_TRIGGER)
					break;
				foreach(lc, ds->objects)
				{
					List	   *names = (List *) lfirst(lc);
					RangeVar   *rel;
					Oid			relid;

					if (list_length(names) < 2)
						continue;
					rel = makeRangeVarFromNameList(list_truncate(list_copy(names),
																 list_length(names) - 1));
					relid = RangeVarGetRelid(rel, NoLock, true);
					if (is_audited_relation(relid) &&
						is_extension_trigger(relid, strVal(llast(names)), extoid))
						audit_ddl_refused("dropping a trigger of the audit trail");
				}
			}
			break;
		default:
			break;
	}
	PG_RETURN_VOID();
}
