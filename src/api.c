/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The frame every SQL-callable waitlist function runs in: argument
 *	  checks, the switch to the extension owner with a hardened search_path,
 *	  kept SPI plans, and the per-resource locks.
 *
 * The API functions behave like SECURITY DEFINER functions without being
 * declared so: applications need EXECUTE on the functions and no privileges
 * on the tables, while the caller's own role and search_path stay at hand
 * for the one place that must run user code in the caller's context (the
 * booking function called by waitlist_accept).
 *
 * IDENTIFICATION
 *	  src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_expr.h"
#include "parser/parser.h"
#include "pgtime.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/bytea.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "api.h"

/*
 * Advisory lock tags of our own: field4 tells them apart from the user-level
 * pg_advisory_lock() family (which uses 1 and 2), field3 says which lock of
 * the resource it is.
 */
#define WAITLIST_LOCKTAG_FIELD4		0x574C	/* 'WL' */
#define WAITLIST_LOCK_GATE			1
#define WAITLIST_LOCK_CAP			2
#define WAITLIST_LOCK_SAMPLE		3

/*
 * The API calls in progress in this backend, innermost last, with the
 * subtransaction each began in.  The frames live on the callers' stacks, so
 * unwinding after an error must use only this array, never the frames.
 * Nesting happens only through user code (a booking function calling the
 * API), so a small bound suffices.
 */
#define WAITLIST_MAX_CALL_DEPTH 16

static WaitlistApiCall *call_stack[WAITLIST_MAX_CALL_DEPTH];
static SubTransactionId call_subxid[WAITLIST_MAX_CALL_DEPTH];
static int	call_depth = 0;

/*
 * The subtransaction a booking function runs in, while it runs; invalid
 * otherwise.  The API is not re-entered from it (see waitlist_api_begin()),
 * so there is at most one.
 */
static SubTransactionId booking_subxid = InvalidSubTransactionId;

/*
 * The shard of this node that every kept statement runs against, while a
 * call about no one resource does one shard's part (waitlist_archive());
 * -1 for none.  Forgotten when a transaction aborts.
 */
static int	shard_scope = -1;
static SubTransactionId shard_scope_subxid = InvalidSubTransactionId;

/*
 * Settings that change what SQL means or how a value prints, pinned for the
 * extension's own SQL as search_path is.  Left to the caller, TimeZone moves
 * every deadline computed with a day or month in it (now() + offer_ttl
 * across a DST change), and the print settings change the capacity
 * trigger's event ids (a date or timestamp in a primary key prints in the
 * caller's DateStyle), so that a repeated cancellation of one row released
 * its units twice; the parse settings would change literals in our SQL.
 * The values are the defaults (UTC for the time zone: a deadline is the
 * same whoever computes it, the worker included).  A booking function gets
 * the caller's values back (waitlist_api_caller_settings()).
 */
typedef enum PinnedSetting
{
	PIN_SEARCH_PATH,
	PIN_TIMEZONE,
	PIN_DATESTYLE,
	PIN_INTERVALSTYLE,
	PIN_EXTRA_FLOAT_DIGITS,
	PIN_BYTEA_OUTPUT,
	PIN_STANDARD_CONFORMING_STRINGS,
	PIN_TRANSFORM_NULL_EQUALS,
	PIN_ARRAY_NULLS,
	PIN_BACKSLASH_QUOTE,
	WAITLIST_PINNED_SETTINGS
} PinnedSetting;

static const struct
{
	const char *name;
	const char *value;
}			pinned_settings[WAITLIST_PINNED_SETTINGS] =
{
	[PIN_SEARCH_PATH] = {"search_path", "pg_catalog, pg_temp"},
	[PIN_TIMEZONE] = {"TimeZone", "UTC"},
	[PIN_DATESTYLE] = {"DateStyle", "ISO, MDY"},
	[PIN_INTERVALSTYLE] = {"IntervalStyle", "postgres"},
	[PIN_EXTRA_FLOAT_DIGITS] = {"extra_float_digits", "1"},
	[PIN_BYTEA_OUTPUT] = {"bytea_output", "hex"},
	[PIN_STANDARD_CONFORMING_STRINGS] = {"standard_conforming_strings", "on"},
	[PIN_TRANSFORM_NULL_EQUALS] = {"transform_null_equals", "off"},
	[PIN_ARRAY_NULLS] = {"array_nulls", "on"},
	[PIN_BACKSLASH_QUOTE] = {"backslash_quote", "safe_encoding"},
};

/*
 * Whether the session has a pinned setting's value already, read from the
 * setting's variable (every API call asks, for each setting).  A time zone
 * with no offset and no daylight saving time (Etc/UTC, as initdb often
 * picks, GMT, Zulu) computes and prints every timestamp as UTC does
 * (DateStyle is pinned to ISO, which prints offsets, not zone names).
 */
static bool
setting_is_pinned(PinnedSetting setting)
{
	long int	gmtoff;

	switch (setting)
	{
		case PIN_SEARCH_PATH:
			return strcmp(namespace_search_path, pinned_settings[PIN_SEARCH_PATH].value) == 0;
		case PIN_TIMEZONE:
			return pg_get_timezone_offset(session_timezone, &gmtoff) && gmtoff == 0;
		case PIN_DATESTYLE:
			return DateStyle == USE_ISO_DATES && DateOrder == DATEORDER_MDY;
		case PIN_INTERVALSTYLE:
			return IntervalStyle == INTSTYLE_POSTGRES;
		case PIN_EXTRA_FLOAT_DIGITS:
			return extra_float_digits == 1;
		case PIN_BYTEA_OUTPUT:
			return bytea_output == BYTEA_OUTPUT_HEX;
		case PIN_STANDARD_CONFORMING_STRINGS:
			return standard_conforming_strings;
		case PIN_TRANSFORM_NULL_EQUALS:
			return !Transform_null_equals;
		case PIN_ARRAY_NULLS:
			return Array_nulls;
		case PIN_BACKSLASH_QUOTE:
			return backslash_quote == BACKSLASH_QUOTE_SAFE_ENCODING;
		case WAITLIST_PINNED_SETTINGS:
			break;
	}
	elog(ERROR, "unknown pinned setting %d", (int) setting);
	return false;
}

/*
 * Owner of the "waitlist" schema, which the install script creates: the
 * role the API's own SQL runs as.
 */
Oid
waitlist_owner(void)
{
	Oid			nspid = get_namespace_oid("waitlist", true);
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"waitlist\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION waitlist.")));
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for namespace %u", nspid);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Enter an API call: remember the caller, become the extension owner, pin
 * search_path to pg_catalog so that no object the caller can create changes
 * what our SQL does (and the other settings that change its meaning, see
 * pinned_settings), and connect to SPI.
 *
 * Not from inside a booking function: waitlist_accept holds the offer, its
 * accept request and the resource's gate while the function runs, and its
 * decision rests on them.  An accept of the same offer would find its own
 * undecided request, a decline or leave would settle the offer under it (one
 * unit, two holders), a release or promotion would hand out units in the
 * middle of a decision.  Rather than weigh each call, every one is refused:
 * the booking system books, and the application calls the API after
 * waitlist_accept returns.
 */
void
waitlist_api_begin(WaitlistApiCall *call)
{
	Oid			owner;
	int			i;

	if (booking_subxid != InvalidSubTransactionId)
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_REENTERED),
				 errmsg("the waitlist API cannot be called from a booking function"),
				 errdetail("A booking function runs inside waitlist_accept(), which holds the offer until the function returns."),
				 errhint("Call the waitlist API after waitlist_accept() returns; to refuse the booking, raise an error in the booking function.")));

	owner = waitlist_owner();
	if (call_depth >= WAITLIST_MAX_CALL_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("waitlist API calls nested too deeply"),
				 errdetail("A booking function called the waitlist API more than %d levels deep.",
						   WAITLIST_MAX_CALL_DEPTH)));

	GetUserIdAndSecContext(&call->caller, &call->caller_sec_context);

	/*
	 * Most sessions have most of the pinned values already: only the others
	 * are set, and only their values kept (NULL: the caller's value is the
	 * pinned one), for a booking function to get back.
	 */
	call->caller_settings = palloc(WAITLIST_PINNED_SETTINGS * sizeof(char *));
	for (i = 0; i < WAITLIST_PINNED_SETTINGS; i++)
		call->caller_settings[i] = setting_is_pinned(i) ? NULL :
			pstrdup(GetConfigOption(pinned_settings[i].name, false, false));

	SetUserIdAndSecContext(owner,
						   call->caller_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	call->guc_nestlevel = NewGUCNestLevel();
	for (i = 0; i < WAITLIST_PINNED_SETTINGS; i++)
		if (call->caller_settings[i] != NULL)
			(void) set_config_option(pinned_settings[i].name, pinned_settings[i].value,
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);

	/*
	 * On Citus our statements run on the node of the resource's shards, and
	 * some call functions of ours that read more of that resource's shards,
	 * or a reference table, on that same node.  Citus takes those reads for
	 * nested distributed queries (which could reach another node) and
	 * refuses them; ours never leave the node.
	 */
	if (waitlist_tables_distributed())
		(void) set_config_option("citus.allow_nested_distributed_execution", "on",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	call_stack[call_depth] = call;
	call_subxid[call_depth] = GetCurrentSubTransactionId();
	call_depth++;
}

/*
 * Leave an API call normally.  On error, transaction abort restores the
 * role, the settings and SPI, and waitlist_api_reset_on_abort() the stack.
 *
 * Settings made inside the call are discarded, not kept: none of ours
 * outlives the call, and nothing user code might have set inside it should.
 */
void
waitlist_api_end(WaitlistApiCall *call)
{
	Assert(call_depth > 0 && call_stack[call_depth - 1] == call);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	AtEOXact_GUC(false, call->guc_nestlevel);
	SetUserIdAndSecContext(call->caller, call->caller_sec_context);
	call_depth--;
}

/*
 * Give user code run inside the call (a booking function) the caller's
 * settings back, at a GUC nest level the code's runner has opened.
 */
void
waitlist_api_caller_settings(WaitlistApiCall *call)
{
	int			i;

	for (i = 0; i < WAITLIST_PINNED_SETTINGS; i++)
		if (call->caller_settings[i] != NULL)
			(void) set_config_option(pinned_settings[i].name, call->caller_settings[i],
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
}

WaitlistApiCall *
waitlist_current_call(void)
{
	return call_depth > 0 ? call_stack[call_depth - 1] : NULL;
}

/*
 * Forget the API calls begun inside a (sub)transaction that aborted; their
 * frames are gone.  InvalidSubTransactionId means the whole transaction.
 */
void
waitlist_api_reset_on_abort(SubTransactionId subxid)
{
	while (call_depth > 0 &&
		   (subxid == InvalidSubTransactionId || call_subxid[call_depth - 1] >= subxid))
		call_depth--;
	if (subxid == InvalidSubTransactionId || booking_subxid >= subxid)
		booking_subxid = InvalidSubTransactionId;
	if (subxid == InvalidSubTransactionId || shard_scope_subxid >= subxid)
		shard_scope = -1;
}

/*
 * A booking function starts (subxid: the subtransaction it runs in) or ends
 * normally (InvalidSubTransactionId).  An abort ends it through
 * waitlist_api_reset_on_abort().
 */
void
waitlist_api_booking(SubTransactionId subxid)
{
	Assert(subxid == InvalidSubTransactionId ||
		   booking_subxid == InvalidSubTransactionId);
	booking_subxid = subxid;
}

/* Pin these settings at a new GUC nest level, which is returned. */
static int
pin_at_new_level(const PinnedSetting *which, int n)
{
	int			nestlevel = NewGUCNestLevel();

	for (int i = 0; i < n; i++)
		if (!setting_is_pinned(which[i]))
			(void) set_config_option(pinned_settings[which[i]].name,
									 pinned_settings[which[i]].value,
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * For SQL of ours run outside an API frame, in the caller's session (a
 * trigger firing on a change made by hand): pin search_path at a new GUC
 * nest level, which the caller closes with AtEOXact_GUC(false, level).
 * Set only when it differs: inside an API frame it is pinned already.
 */
int
waitlist_pin_search_path(void)
{
	static const PinnedSetting search_path[] = {PIN_SEARCH_PATH};

	return pin_at_new_level(search_path, lengthof(search_path));
}

/*
 * For values printed as text for another node to read back (waitlist.forward()'s
 * answers): pin the settings that change how a value prints, at a new GUC
 * nest level, which the caller closes with AtEOXact_GUC(false, level).
 */
int
waitlist_pin_output_settings(void)
{
	static const PinnedSetting output[] = {
		PIN_DATESTYLE, PIN_INTERVALSTYLE, PIN_EXTRA_FLOAT_DIGITS, PIN_BYTEA_OUTPUT
	};

	return pin_at_new_level(output, lengthof(output));
}

/* the cursor options of a statement's plan mode */
static int
plan_cursor_options(WaitlistPlan *plan)
{
	return plan->plan_mode == WAITLIST_CUSTOM_PLAN ? CURSOR_OPT_CUSTOM_PLAN :
		plan->plan_mode == WAITLIST_GENERIC_PLAN ? CURSOR_OPT_GENERIC_PLAN : 0;
}

static SPIPlanPtr
prepare_kept(WaitlistPlan *plan, const char *sql, int cursor_options, bool time_parameters)
{
	Oid			argtypes[lengthof(plan->argtypes) + 2];
	int			nargs = plan->nargs;
	SPIPlanPtr	p;

	memcpy(argtypes, plan->argtypes, nargs * sizeof(Oid));
	if (time_parameters)
	{
		argtypes[nargs++] = TIMESTAMPTZOID;
		argtypes[nargs++] = TIMESTAMPTZOID;
	}
	p = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (p == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(p) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return p;
}

/*
 * Prepare a statement on first use and keep it for the life of the backend.
 *
 * On Citus, a generic plan of a statement that writes several tables of one
 * resource cannot be routed to the resource's shards: Citus routes it once
 * it sees the parameters.  So once the tables are distributed, every kept
 * statement is planned for each run's parameters, and the plans kept before
 * are prepared again.  A node-scope statement, which reads the node's shards
 * as plain tables, is planned as on a single server, and prepared again
 * whenever the node's shards change (a shard moved).
 */
SPIPlanPtr
waitlist_plan(WaitlistPlan *plan)
{
	bool		distributed = waitlist_tables_distributed();
	char	   *sql = NULL;

	if (distributed && plan->node_scope)
		sql = waitlist_node_scope_sql(plan->sql);
	else if (distributed && (plan->plan == NULL || !plan->prepared_distributed))
	{
		bool		substituted;

		sql = waitlist_time_parameters_sql(plan->sql, plan->nargs, &substituted);
		if (!substituted)
		{
			pfree(sql);
			sql = NULL;
		}
	}
	if (plan->plan != NULL &&
		(plan->prepared_distributed != distributed ||
		 (sql != NULL && (plan->prepared_sql == NULL || strcmp(sql, plan->prepared_sql) != 0))))
	{
		SPI_freeplan(plan->plan);
		plan->plan = NULL;
		if (plan->few_rows_plan != NULL)
			SPI_freeplan(plan->few_rows_plan);
		plan->few_rows_plan = NULL;
	}
	if (plan->plan == NULL)
	{
		const char *text = plan->sql;

		if (plan->prepared_sql != NULL)
			pfree(plan->prepared_sql);
		plan->prepared_sql = NULL;
		if (sql != NULL)
			text = plan->prepared_sql = MemoryContextStrdup(TopMemoryContext, sql);
		plan->time_parameters = distributed && !plan->node_scope && sql != NULL;
		/* a node-scope statement reads plain shards: Citus has nothing to route */
		plan->plan = prepare_kept(plan, text,
								  distributed && !plan->node_scope ? CURSOR_OPT_CUSTOM_PLAN :
								  plan_cursor_options(plan),
								  plan->time_parameters);
		plan->prepared_distributed = distributed;
	}
	if (sql != NULL)
		pfree(sql);
	return plan->plan;
}

static int
execute_prepared(WaitlistPlan *plan, SPIPlanPtr p, Datum *values, const char *nulls,
				 bool read_only, long count)
{
	Datum		all_values[lengthof(plan->argtypes) + 2];
	char		all_nulls[lengthof(plan->argtypes) + 2];
	int			rc;

	if (plan->time_parameters && p == plan->plan)
	{
		for (int i = 0; i < plan->nargs; i++)
		{
			all_values[i] = values[i];
			all_nulls[i] = nulls != NULL ? nulls[i] : ' ';
		}
		all_values[plan->nargs] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		all_values[plan->nargs + 1] = TimestampTzGetDatum(GetCurrentTimestamp());
		all_nulls[plan->nargs] = all_nulls[plan->nargs + 1] = ' ';
		values = all_values;
		nulls = all_nulls;
	}
	rc = SPI_execute_plan(p, values, nulls, read_only, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s",
			 plan->sql, SPI_result_code_string(rc));
	return rc;
}

/* A statement's text on a resource's shards, planned as the statement is. */
static SPIPlanPtr
prepare_on_shards(WaitlistPlan *plan, const char *sql)
{
	return prepare_kept(plan, sql, plan_cursor_options(plan), false);
}

/* Run a kept statement against shard "index" of this node (shards.c). */
int
waitlist_execute_on_shard(WaitlistPlan *plan, int index, Datum *values, const char *nulls)
{
	return execute_prepared(plan, waitlist_shard_plan(plan, index, prepare_on_shards),
							values, nulls, false, 0);
}

/* Set the shard scope (-1: none); returns the one it replaces. */
int
waitlist_scope_to_shard(int index)
{
	int			previous = shard_scope;

	if (index >= 0 && !waitlist_shard_is_local(index))
		elog(ERROR, "shard %d is not on this node", index);
	shard_scope = index;
	shard_scope_subxid = GetCurrentSubTransactionId();
	return previous;
}

/*
 * Run a kept statement.  On Citus, on the node of the resource the
 * statement is about, against its shards (shards.c).
 */
int
waitlist_execute(WaitlistPlan *plan, Datum *values, const char *nulls,
				 bool read_only, long count)
{
	if (waitlist_tables_distributed())
	{
		SPIPlanPtr	local;

		if (shard_scope >= 0)
			return execute_prepared(plan, waitlist_shard_plan(plan, shard_scope, prepare_on_shards),
									values, nulls, read_only, count);
		local = waitlist_shard_local_plan(plan, values, nulls, prepare_on_shards);

		if (local != NULL)
			return execute_prepared(plan, local, values, nulls, read_only, count);
	}
	return execute_prepared(plan, waitlist_plan(plan), values, nulls, read_only, count);
}

/*
 * Run a kept statement that handles about "rows" rows (negative: not
 * known): a statement planned for each run (WAITLIST_CUSTOM_PLAN) runs
 * from its generic plan when the rows are few.
 */
int
waitlist_execute_rows(WaitlistPlan *plan, int64 rows, Datum *values, const char *nulls)
{
	if (plan->plan_mode != WAITLIST_CUSTOM_PLAN || rows < 0 || rows > WAITLIST_FEW_ROWS ||
		waitlist_tables_distributed())
		return waitlist_execute(plan, values, nulls, false, 0);
	if (plan->few_rows_plan == NULL)
		plan->few_rows_plan = prepare_kept(plan, plan->sql, CURSOR_OPT_GENERIC_PLAN, false);
	return execute_prepared(plan, plan->few_rows_plan, values, nulls, false, 0);
}

/*
 * The last role name looked up: an API call records its caller on every
 * row it writes.  Forgotten when pg_authid changes (a rename).
 */
static Oid	cached_role = InvalidOid;
static NameData cached_role_name;

static void
forget_role_name(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_role = InvalidOid;
}

/* A role's name, as the audit trail records it. */
Name
waitlist_role_name(Oid roleid)
{
	static bool callback_registered = false;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(AUTHOID, forget_role_name, (Datum) 0);
		callback_registered = true;
	}
	if (roleid != cached_role)
	{
		namestrcpy(&cached_role_name, GetUserNameFromId(roleid, false));
		cached_role = roleid;
	}
	return &cached_role_name;
}

/* A non-null text column of a row of an SPI result. */
text *
waitlist_spi_text(SPITupleTable *tuptable, uint64 row, int column)
{
	bool		isnull;
	Datum		value = SPI_getbinval(tuptable->vals[row], tuptable->tupdesc, column, &isnull);

	if (isnull)
		elog(ERROR, "unexpected NULL in column %d", column);
	return DatumGetTextPP(value);
}

/* Copy every row of the last SPI result into a materialized SRF's tuplestore. */
void
waitlist_spi_rows_to_tuplestore(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			ncolumns = rsinfo->setDesc->natts;
	Datum	   *values = palloc(ncolumns * sizeof(Datum));
	bool	   *nulls = palloc(ncolumns * sizeof(bool));
	uint64		row;
	int			col;

	Assert(SPI_tuptable->tupdesc->natts == ncolumns);
	for (row = 0; row < SPI_processed; row++)
	{
		for (col = 0; col < ncolumns; col++)
			values[col] = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
										col + 1, &nulls[col]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

void
waitlist_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/* An identifier argument: not null, not empty, bounded in size. */
text *
waitlist_id_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	text	   *value;
	int			len;

	waitlist_check_not_null(fcinfo, argno, argname);
	value = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(value);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (len > WAITLIST_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", argname),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   len, WAITLIST_MAX_ID_BYTES)));
	return value;
}

/*
 * An interval setting or argument: positive, and at most max (an interval
 * literal), so that now() plus it can never leave the timestamp range.
 * max_detail NULL: says which is the longest allowed.
 */
void
waitlist_check_interval(Datum value, const char *name, const char *max,
						const char *positive_detail, const char *max_detail)
{
	Interval   *zero = palloc0(sizeof(Interval));
	Datum		max_value = DirectFunctionCall3(interval_in, CStringGetDatum(max),
												ObjectIdGetDatum(InvalidOid),
												Int32GetDatum(-1));

	if (!DatumGetBool(DirectFunctionCall2(interval_gt, value, IntervalPGetDatum(zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", name),
				 positive_detail ? errdetail("%s", positive_detail) : 0));
	if (DatumGetBool(DirectFunctionCall2(interval_gt, value, max_value)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not exceed %s", name, max),
				 max_detail ? errdetail("%s", max_detail) :
				 errdetail("The longest %s allowed is %s.", name, max)));
}

/*
 * The elements of an array argument that must be one-dimensional (a list
 * of channels, of bands); returns how many.
 */
int
waitlist_flat_array(Datum array, Oid elemtype, const char *name, Datum **elems, bool **nulls)
{
	ArrayType  *arr = DatumGetArrayTypeP(array);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", name)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, elems, nulls, &n);
	return n;
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
 * The age bound of waitlist_archive() and its pg_cron job.  A fan polls the
 * status of an entry that just ended, a client retries its accept with the
 * same key, fifo_order looks an hour back: none of that should find its
 * rows gone.
 */
void
waitlist_check_archive_age(Interval *older_than)
{
	Interval	min_age;

	memset(&min_age, 0, sizeof(min_age));
	min_age.time = (int64) WAITLIST_MIN_ARCHIVE_AGE_SECS * USECS_PER_SEC;
	if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(older_than),
										 IntervalPGetDatum(&min_age))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must be at least 1 hour"),
				 errdetail("Entries that ended more recently may still be read by status polls, accept retries and waitlist_check().")));
}

/* The lock tag of one of a resource's locks (WAITLIST_LOCK_GATE, _CAP, _SAMPLE). */
static void
resource_locktag(LOCKTAG *tag, const text *resource_id, uint32 which)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, waitlist_resource_hash(resource_id),
						 which, WAITLIST_LOCKTAG_FIELD4);
}

static bool
lock_resource_key(const text *resource_id, uint32 which, LOCKMODE mode, bool dont_wait)
{
	LOCKTAG		tag;

	resource_locktag(&tag, resource_id, which);
	return LockAcquire(&tag, mode, false, dont_wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * The resource's join gate, held to the end of the transaction.
 *
 * Joins (and whatever else puts someone in line: a leave that may roll
 * back, a failed booking) take it shared and then look at free_units;
 * whatever adds free units locks the resource row, adds them and then only
 * tries the gate exclusively (promote_added_units() in promote.c).  So either
 * the join sees the added units and promotes, or the adder gets the gate
 * once no join is in flight and its promotion sees the new entry, or it
 * hands its units to the worker, the sweep or the next join, which promote
 * them once the joins in flight have committed: a unit never sits free
 * while someone waits, once things are quiet.  Only waitlist_promote(),
 * which its caller runs to promote now, and an inline
 * waitlist_retry_event() wait for the gate exclusively; nothing else does,
 * so no queued exclusive request holds up later joins behind a slow
 * booking function or an idle transaction.  Joins never block one another
 * on it.
 */
void
waitlist_lock_resource_gate(const text *resource_id, bool exclusive)
{
	(void) lock_resource_key(resource_id, WAITLIST_LOCK_GATE,
							 exclusive ? ExclusiveLock : ShareLock, false);
}

/*
 * Take the gate exclusively only if nobody holds it: for whatever adds free
 * units, which hands them on rather than queue behind a joiner, an accept
 * in flight or an idle transaction.
 */
bool
waitlist_try_lock_resource_gate(const text *resource_id)
{
	return lock_resource_key(resource_id, WAITLIST_LOCK_GATE, ExclusiveLock, true);
}

/* The same, shared: for a fan put back in line while holding other locks. */
bool
waitlist_try_lock_resource_gate_shared(const text *resource_id)
{
	return lock_resource_key(resource_id, WAITLIST_LOCK_GATE, ShareLock, true);
}

/*
 * Give back the exclusive gate taken by waitlist_try_lock_resource_gate()
 * before the transaction ends, once its promotion left no unit free: a join
 * arriving later cannot then miss a unit, and a transaction that stays open
 * after a release or a decline does not hold up the resource's joins.
 */
void
waitlist_unlock_resource_gate(const text *resource_id)
{
	LOCKTAG		tag;

	resource_locktag(&tag, resource_id, WAITLIST_LOCK_GATE);
	(void) LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Serializes joins to a resource that has a max_waiting cap, so that the
 * count a join checks cannot be overtaken by a concurrent join.  Resources
 * without a cap never take it.
 */
void
waitlist_lock_resource_cap(const text *resource_id)
{
	(void) lock_resource_key(resource_id, WAITLIST_LOCK_CAP, ExclusiveLock, false);
}

/*
 * The right to refresh a resource's line sample (src/entry.c), held to the
 * end of the transaction; never waited for: whoever does not get it uses the
 * sample as it is.
 */
bool
waitlist_try_lock_resource_sample(const text *resource_id)
{
	return lock_resource_key(resource_id, WAITLIST_LOCK_SAMPLE, ExclusiveLock, true);
}

/*
 * The gate protocol needs statements that see everything committed before
 * they started: under REPEATABLE READ or SERIALIZABLE a transaction's
 * snapshot predates the gate, so a join could miss a unit released just
 * before it took the gate, and a promotion a fan who joined just before.
 * Functions that promote or join refuse to run there; those that only give
 * units back hand them to the worker or the sweep instead of promoting.
 * "why" (NULL: the gate protocol's reason) is the error's detail for a
 * function with a reason of its own.
 */
void
waitlist_require_read_committed(const char *what, const char *why)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_ISOLATION_LEVEL),
				 errmsg("%s cannot run at isolation level %s", what,
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("%s", why ? why :
						   "Its transaction snapshot can predate a concurrent release or join, which would leave a unit of capacity free while someone waits."),
				 errhint("Call it in a READ COMMITTED transaction, for example after SET TRANSACTION ISOLATION LEVEL READ COMMITTED.")));
}
