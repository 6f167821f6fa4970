/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  On a Citus cluster, an API call made on a node that does not hold the
 *	  resource it is about is passed on, whole, to the node that does.
 *
 * Our statements run only against the shards of the node they run on
 * (shards.c): Citus would split them, run their parts on other backends,
 * where the engine's own changes look like changes made by hand, and draw
 * their ids on the wrong node.  So each entry point asks first: which
 * resource is this call about (its resource_id, the resource of its entry,
 * offer or token), and does this node hold it?  If not, the call goes to
 * waitlist.forward(), which Citus delegates to the resource's node inside
 * the caller's transaction (a distributed function with force_delegation),
 * where it runs the same function as the same caller.  The answer comes back
 * as text and is made into the function's result again.
 *
 * A call by an entry or offer id finds its resource in this node's shards
 * first, then on every node (the fan-out the scale-out document measures).
 *
 * A call about no one resource (an inbox, a sweep, an archive batch) goes
 * to every node that holds shards, each of which answers for its own rows:
 * waitlist_fanned_out().
 *
 * IDENTIFICATION
 *	  src/forward.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "store.h"

/* the resource of an entry or offer: on this node's shards, then anywhere */
static WaitlistPlan entry_here_plan = {
	"SELECT e.resource_id FROM waitlist.entry e WHERE e.entry_id OPERATOR(pg_catalog.=) $1"
	" UNION ALL "
	"SELECT a.resource_id FROM waitlist_archive.entry a WHERE a.entry_id OPERATOR(pg_catalog.=) $1"
	" LIMIT 1",
	1, {INT8OID}, 0, true
};
static WaitlistPlan entry_anywhere_plan = {
	"SELECT e.resource_id FROM waitlist.entry e WHERE e.entry_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};
static WaitlistPlan archived_entry_anywhere_plan = {
	"SELECT a.resource_id FROM waitlist_archive.entry a WHERE a.entry_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};
static WaitlistPlan offer_here_plan = {
	"SELECT o.resource_id FROM waitlist.offer o WHERE o.offer_id OPERATOR(pg_catalog.=) $1"
	" UNION ALL "
	"SELECT a.resource_id FROM waitlist_archive.offer a WHERE a.offer_id OPERATOR(pg_catalog.=) $1"
	" LIMIT 1",
	1, {INT8OID}, 0, true
};
static WaitlistPlan offer_anywhere_plan = {
	"SELECT o.resource_id FROM waitlist.offer o WHERE o.offer_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};
static WaitlistPlan archived_offer_anywhere_plan = {
	"SELECT a.resource_id FROM waitlist_archive.offer a WHERE a.offer_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};

static WaitlistPlan outbox_here_plan = {
	"SELECT b.resource_id FROM waitlist.outbox b WHERE b.outbox_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}, 0, true
};
static WaitlistPlan outbox_anywhere_plan = {
	"SELECT b.resource_id FROM waitlist.outbox b WHERE b.outbox_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};

static text *
first_resource(WaitlistPlan *plan, Datum id)
{
	waitlist_execute(plan, &id, NULL, true, 1);
	if (SPI_processed == 0)
		return NULL;
	return waitlist_spi_text(SPI_tuptable, 0, 1);
}

/*
 * The resource of an outbox row in this node's shards (on a single server,
 * in the table); NULL if there is none here.
 */
text *
waitlist_outbox_row_resource(int64 outbox_id)
{
	return first_resource(&outbox_here_plan, Int64GetDatum(outbox_id));
}

/* the resource the call is about; NULL if none is found (the call says so) */
static text *
route_resource(FunctionCallInfo fcinfo, WaitlistRoute route, int argno)
{
	Datum		key;
	text	   *resource_id = NULL;

	if (PG_ARGISNULL(argno))
		return NULL;
	key = PG_GETARG_DATUM(argno);
	switch (route)
	{
		case WAITLIST_ROUTE_RESOURCE:
			return PG_GETARG_TEXT_PP(argno);
		case WAITLIST_ROUTE_ENTRY:
			resource_id = first_resource(&entry_here_plan, key);
			if (resource_id == NULL)
				resource_id = first_resource(&entry_anywhere_plan, key);
			if (resource_id == NULL)
				resource_id = first_resource(&archived_entry_anywhere_plan, key);
			return resource_id;
		case WAITLIST_ROUTE_OFFER:
			resource_id = first_resource(&offer_here_plan, key);
			if (resource_id == NULL)
				resource_id = first_resource(&offer_anywhere_plan, key);
			if (resource_id == NULL)
				resource_id = first_resource(&archived_offer_anywhere_plan, key);
			return resource_id;
		case WAITLIST_ROUTE_OUTBOX:
			resource_id = waitlist_outbox_row_resource(DatumGetInt64(key));
			if (resource_id == NULL)
				resource_id = first_resource(&outbox_anywhere_plan, key);
			return resource_id;
		case WAITLIST_ROUTE_TOKEN:
			/*
			 * Verified here as on the resource's node: the keys are a
			 * reference table, so a bad token gets the same error here.
			 */
			(void) waitlist_verify_offer_token(PG_GETARG_TEXT_PP(argno), &resource_id);
			return resource_id;
	}
	return NULL;
}

/* The call's arguments as text, for waitlist.forward(). */
static Datum
arguments_as_text(FunctionCallInfo fcinfo, Oid *argtypes)
{
	int			nargs = PG_NARGS();
	Datum	   *elems = palloc(sizeof(Datum) * Max(nargs, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(nargs, 1));
	int			dims[1] = {nargs};
	int			lbs[1] = {1};

	for (int i = 0; i < nargs; i++)
	{
		Oid			output;
		bool		varlena;

		nulls[i] = PG_ARGISNULL(i);
		if (nulls[i])
			continue;
		getTypeOutputInfo(argtypes[i], &output, &varlena);
		elems[i] = CStringGetTextDatum(OidOutputFunctionCall(output, PG_GETARG_DATUM(i)));
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false,
											  TYPALIGN_INT));
}

/* One row of text values (a text[]) as the function's result. */
static Datum
result_from_text(FunctionCallInfo fcinfo, Oid rettype, TupleDesc tupdesc, ArrayType *row,
				 bool *isnull)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;

	deconstruct_array(row, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	if (tupdesc == NULL)
	{
		Oid			input;
		Oid			ioparam;

		*isnull = nelems < 1 || nulls[0];
		if (*isnull)
			return (Datum) 0;
		getTypeInputInfo(rettype, &input, &ioparam);
		return OidInputFunctionCall(input, TextDatumGetCString(elems[0]), ioparam, -1);
	}
	else
	{
		char	  **values = palloc0(sizeof(char *) * tupdesc->natts);
		AttInMetadata *meta = TupleDescGetAttInMetadata(tupdesc);

		for (int i = 0; i < tupdesc->natts && i < nelems; i++)
			values[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
		*isnull = false;
		return HeapTupleGetDatum(BuildTupleFromCStrings(meta, values));
	}
}

static WaitlistPlan forward_plan = {
	"SELECT f.r FROM waitlist.forward($1, $2, $3, $4) AS f(r)",
	4, {TEXTOID, REGPROCEDUREOID, TEXTARRAYOID, OIDOID}
};

/*
 * Calls passed on by waitlist.forward() that run on this node now: such a
 * call is this node's part, and is not passed on again.
 */
static int	forwarded_calls_running = 0;

void
waitlist_forwarded_call_begins(void)
{
	forwarded_calls_running++;
}

void
waitlist_forwarded_call_ends(void)
{
	Assert(forwarded_calls_running > 0);
	forwarded_calls_running--;
}

/* The function's argument types, and whether it returns a set. */
static Oid *
function_argument_types(FunctionCallInfo fcinfo, bool *retset)
{
	Oid			fn = fcinfo->flinfo->fn_oid;
	HeapTuple	proc;
	Oid		   *argtypes;

	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u", fn);
	*retset = ((Form_pg_proc) GETSTRUCT(proc))->proretset;
	argtypes = palloc(sizeof(Oid) * Max(PG_NARGS(), 1));
	for (int i = 0; i < PG_NARGS(); i++)
		argtypes[i] = ((Form_pg_proc) GETSTRUCT(proc))->proargtypes.values[i];
	ReleaseSysCache(proc);
	return argtypes;
}

/* Run this call (its arguments as text), by waitlist.forward(), on the node of route_key. */
static void
forward_call(FunctionCallInfo fcinfo, Datum arguments, text *route_key, Oid caller)
{
	Datum		values[4];

	values[0] = PointerGetDatum(route_key);
	values[1] = ObjectIdGetDatum(fcinfo->flinfo->fn_oid);
	values[2] = arguments;
	values[3] = ObjectIdGetDatum(caller);
	waitlist_execute(&forward_plan, values, NULL, false, 0);
}

/*
 * A call about no one resource, made on a Citus cluster: unless it was
 * passed on to this node already, run it on every node that holds shards
 * and return true, with *answers the rows they answered (a text[] each, in
 * the caller's memory context).  false: the call runs here, over this
 * node's rows (on a single server, all of them).
 */
bool
waitlist_fanned_out(FunctionCallInfo fcinfo, List **answers)
{
	MemoryContext caller_context = CurrentMemoryContext;
	WaitlistApiCall call;
	Datum		arguments;
	bool		retset;
	char	  **keys;
	int			nkeys;

	*answers = NIL;
	if (!waitlist_tables_distributed() || forwarded_calls_running > 0)
		return false;

	waitlist_api_begin(&call);
	arguments = arguments_as_text(fcinfo, function_argument_types(fcinfo, &retset));
	nkeys = waitlist_node_route_keys(&keys);
	for (int n = 0; n < nkeys; n++)
	{
		forward_call(fcinfo, arguments, cstring_to_text(keys[n]), call.caller);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Datum		row = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
			MemoryContext old = MemoryContextSwitchTo(caller_context);

			if (!isnull)
				*answers = lappend(*answers, DatumGetArrayTypePCopy(row));
			MemoryContextSwitchTo(old);
		}
	}
	waitlist_api_end(&call);
	return true;
}

/* The sum of the nodes' answers to a call that returns a count. */
int64
waitlist_sum_of_answers(List *answers)
{
	int64		sum = 0;
	ListCell   *lc;

	foreach(lc, answers)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array((ArrayType *) lfirst(lc), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		if (n > 0 && !nulls[0])
			sum += pg_strtoint64(TextDatumGetCString(elems[0]));
	}
	return sum;
}

/*
 * If this call must run on another node, run it there and set *result (and
 * fcinfo->isnull); true if it did.  "argno" is the argument that leads to
 * the resource, by "route".
 */
bool
waitlist_forwarded(FunctionCallInfo fcinfo, WaitlistRoute route, int argno, Datum *result)
{
	WaitlistApiCall call;
	text	   *resource_id;
	Oid			fn = fcinfo->flinfo->fn_oid;
	Oid		   *argtypes;
	Oid			rettype;
	TupleDesc	tupdesc = NULL;
	bool		retset;
	TypeFuncClass class;

	if (!waitlist_tables_distributed())
		return false;

	waitlist_api_begin(&call);
	resource_id = route_resource(fcinfo, route, argno);
	if (resource_id == NULL || waitlist_resource_is_local(resource_id))
	{
		waitlist_api_end(&call);
		return false;
	}

	argtypes = function_argument_types(fcinfo, &retset);
	if (retset)
		elog(ERROR, "waitlist_forwarded: function %u returns a set", fn);

	class = get_call_result_type(fcinfo, &rettype, &tupdesc);
	if (class == TYPEFUNC_COMPOSITE)
		tupdesc = BlessTupleDesc(tupdesc);
	else if (class == TYPEFUNC_SCALAR)
		tupdesc = NULL;
	else
		elog(ERROR, "waitlist_forwarded: unexpected result type of function %u", fn);

	forward_call(fcinfo, arguments_as_text(fcinfo, argtypes), resource_id, call.caller);
	{
		bool		isnull = true;

		if (SPI_processed > 0)
		{
			bool		rownull;
			Datum		row = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &rownull);

			*result = SPI_datumTransfer(result_from_text(fcinfo, rettype, tupdesc,
														 DatumGetArrayTypeP(row), &isnull),
										tupdesc == NULL ? get_typbyval(rettype) : false,
										tupdesc == NULL ? get_typlen(rettype) : -1);
		}
		else
			*result = (Datum) 0;
		fcinfo->isnull = isnull;
	}
	waitlist_api_end(&call);
	return true;
}
