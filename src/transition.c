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
 * From 1.1 the triggers fire ALWAYS (session_replication_role does not
 * silence them), rows reach waitlist.transition only through this file's
 * INSERT (or a superuser's restore), and an event trigger refuses the DDL
 * that would switch the guards off or rewrite the log (see docs/security.md,
 * "Privileges", for what a superuser can still do).
 *
 * IDENTIFICATION
 *	  src/transition.c
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
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "waitlist.h"

PG_FUNCTION_INFO_V1(waitlist_record_transitions);
PG_FUNCTION_INFO_V1(waitlist_transition_append_only);
PG_FUNCTION_INFO_V1(waitlist_transition_insert_guard);
PG_FUNCTION_INFO_V1(waitlist_audit_ddl_guard);

/*
 * Nesting depth of this file's own INSERTs into waitlist.transition, the
 * only ones the insert guard lets through.  Reset on error by the
 * PG_FINALLY around the INSERT.
 */
static int	recording_depth = 0;

/*
 * Set while waitlist_move_transitions() runs its one statement: the only
 * DELETE of waitlist.transition the append-only trigger lets through, and
 * the only INSERT into waitlist_archive.transition its insert guard does.
 */
static int	archiving_depth = 0;

/*
 * One statement per (table, event).  Within a statement, entries are logged
 * in line order and offers in creation order, so the log reads as the
 * promotion happened.  Operators are schema-qualified, and search_path is
 * pinned while they run, because a manual UPDATE runs this in the caller's
 * session.
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
	int			nestlevel;

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

	/*
	 * A superuser's change in replica mode outside the API is a restore or a
	 * replication apply: the rows arrive with the transitions recorded where
	 * they were made, so recording them again would duplicate the trail.
	 */
	if (call == NULL && SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA &&
		superuser())
		return PointerGetDatum(NULL);

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
	/*
	 * Inside an API frame the path is pinned already; a change by hand runs
	 * in the caller's session and path.  Setting it only when it differs
	 * spares every audited statement of the API a search_path change (and
	 * the namespace cache's recomputation that follows).
	 */
	nestlevel = NewGUCNestLevel();
	if (strcmp(namespace_search_path, "pg_catalog, pg_temp") != 0)
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	recording_depth++;
	PG_TRY();
	{
		int			rc = SPI_execute_plan(waitlist_plan(plan), values, NULL, false, 0);

		if (rc != SPI_OK_INSERT)
			elog(ERROR, "recording transitions failed: %s", SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		recording_depth--;
	}
	PG_END_TRY();
	AtEOXact_GUC(false, nestlevel);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	return PointerGetDatum(NULL);
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
 * Run the one statement of waitlist_archive() that moves rows of
 * waitlist.transition to waitlist_archive.transition: its DELETE is the
 * only one the append-only trigger allows, its INSERT the only one into the
 * archive.  The statement touches no other table, so no trigger but ours
 * (the DDL guard refuses others on both logs) runs while it is allowed.
 */
int64
waitlist_move_transitions(WaitlistPlan *plan, Datum *values, const char *nulls)
{
	archiving_depth++;
	PG_TRY();
	{
		(void) waitlist_execute(plan, values, nulls, false, 0, NULL);
	}
	PG_FINALLY();
	{
		archiving_depth--;
	}
	PG_END_TRY();
	return (int64) SPI_processed;
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
		if (archiving_depth > 0 && !fired_on_archive(trigdata) &&
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

	if ((fired_on_archive(trigdata) ? archiving_depth : recording_depth) == 0 &&
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
