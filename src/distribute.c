/*-------------------------------------------------------------------------
 *
 * distribute.c
 *	  The SQL entry points of the scale-out on Citus (waitlist_distribute()
 *	  does its work in SQL, sql/waitlist--1.0--1.1.sql): whether this
 *	  database's tables are distributed, for the SQL that runs differently
 *	  then, the trigger that gives the rows stored on a node their ids, and
 *	  the function that runs a call passed on from another node.
 *
 * IDENTIFICATION
 *	  src/distribute.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/tableam.h"
#include "catalog/dependency.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_proc.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "store.h"

PG_FUNCTION_INFO_V1(waitlist_tables_distributed_sql);

/* waitlist.tables_distributed(): whether waitlist_distribute() has run */
Datum
waitlist_tables_distributed_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(waitlist_tables_distributed());
}

/*
 * The ids of the rows inserted on a node, from the node's own sequences
 * (waitlist.node_ids(), a BEFORE INSERT trigger of entry, offer, outbox
 * and transition, which their shards get when they are distributed).  Citus's shards have no column defaults, and an id Citus draws
 * on the coordinator for a statement it sends on would come from the
 * coordinator's range; the ids are drawn where the row is stored instead.
 *
 * An id is NODE_ID_BASE + n * NODE_ID_GROUPS + g: n from the node's
 * sequence, g the node's Citus group.  Ids drawn on different nodes never
 * meet (their remainders differ), and all are above the ids of a single
 * server, which the rows of an installation distributed later keep.
 *
 * Ids order things: seq the line (an entry's seq is its id here), and
 * transition_id each entry's and offer's history.  A node's sequence only
 * goes up, but after citus_move_shard_placement() a resource's rows are on
 * a node whose sequence may be behind the ids the resource got elsewhere.
 * So each id drawn is compared with the largest of its resource (one probe
 * of the shard's primary key, which leads with resource_id) and, if it is
 * not above it, the node's sequence is moved past it first: a resource's
 * ids keep growing across moves, and who joined after a move stays behind
 * who joined before.
 */
#define NODE_ID_BASE			(INT64CONST(1) << 52)
#define NODE_ID_GROUPS			1024
#define NODE_ID_REBASE_MARGIN	INT64CONST(1000000)

/*
 * The largest id of the resource in the shard, 0 if it has none: the first
 * entry of a backward scan of the shard's primary key (resource_id, id) from
 * the resource's end.  Read from the index, not by a query: the rows one
 * statement inserts are invisible to the statement's own snapshot, and a
 * query would walk past all of them on every insert of a storm of offers.
 * Every entry counts, whoever wrote it and whether or not it committed: an
 * id above it is above all of them.
 */
static int64
largest_id(Relation rel, int resource_attnum, int id_attnum, Datum resource_id)
{
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	int64		largest = 0;

	if (!OidIsValid(pkey))
		elog(ERROR, "waitlist_node_ids: \"%s\" has no primary key", RelationGetRelationName(rel));
	index = index_open(pkey, AccessShareLock);
	if (index->rd_index->indnkeyatts != 2 ||
		index->rd_index->indkey.values[0] != resource_attnum ||
		index->rd_index->indkey.values[1] != id_attnum)
		elog(ERROR, "waitlist_node_ids: the primary key of \"%s\" is not (resource_id, id)",
			 RelationGetRelationName(rel));
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ, resource_id);
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, SnapshotAny, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		Datum		id = slot_getattr(slot, id_attnum, &isnull);

		if (!isnull)
			largest = DatumGetInt64(id);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	return largest;
}

/* this node's Citus group, read once */
static int
node_group(void)
{
	static int	group = -1;

	if (group < 0)
	{
		bool		isnull;

		if (SPI_execute("SELECT groupid FROM pg_catalog.pg_dist_local_group", true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "this node's Citus group could not be read");
		group = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (group < 0 || group >= NODE_ID_GROUPS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("Citus group %d is beyond the %d groups waitlist ids can tell apart",
							group, NODE_ID_GROUPS)));
	}
	return group;
}

/*
 * Whether Citus puts the id, taken as a distribution value, in the shard of
 * its resource: then a call named by the id alone (waitlist_accept(offer_id,
 * ...)), a distributed function by that argument, is sent by Citus straight
 * to the resource's node.  Citus hashes a bigint distribution argument as
 * the text of the table's distribution column.
 */
static bool
id_routes_to(int64 id, int resource_shard)
{
	char		digits[MAXINT8LEN + 1];

	snprintf(digits, sizeof(digits), INT64_FORMAT, id);
	return waitlist_shard_index_of(cstring_to_text(digits)) == resource_shard;
}

/* how many ids are drawn, at most, to find one that routes to its resource */
#define NODE_ID_ROUTE_TRIES		100000

static int64
next_node_id(Relation rel, int resource_attnum, int id_attnum, Oid seqid, Datum resource_id,
			 bool routed)
{
	int64		n = DatumGetInt64(DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(seqid)));
	int64		group = node_group();
	int64		largest = largest_id(rel, resource_attnum, id_attnum, resource_id);

	if (NODE_ID_BASE + n * NODE_ID_GROUPS + group <= largest)
	{
		/*
		 * Moved past the resource's largest id with room to spare: nextval()
		 * calls of other sessions between the setval() and the ones before
		 * it cannot run past the margin, so no id is drawn twice.
		 */
		DirectFunctionCall2(setval_oid, ObjectIdGetDatum(seqid),
							Int64GetDatum((largest - NODE_ID_BASE) / NODE_ID_GROUPS +
										  NODE_ID_REBASE_MARGIN));
		n = DatumGetInt64(DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(seqid)));
	}
	if (routed)
	{
		int			shard = waitlist_shard_index_of(DatumGetTextPP(resource_id));

		/*
		 * About one id in as many as there are shards routes to a given
		 * shard; the ids passed over are never used.  An id that does not
		 * route (none found in the tries) still works: its call is passed on.
		 */
		for (int tries = 0; tries < NODE_ID_ROUTE_TRIES && shard >= 0 &&
			 !id_routes_to(NODE_ID_BASE + n * NODE_ID_GROUPS + group, shard); tries++)
			n = DatumGetInt64(DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(seqid)));
	}
	return NODE_ID_BASE + n * NODE_ID_GROUPS + group;
}

PG_FUNCTION_INFO_V1(waitlist_node_ids);

Datum
waitlist_node_ids(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	const char *id_column;
	char	   *seqname;
	Oid			seqid;
	int			id_attnum;
	int			resource_attnum;
	int			seq_attnum;
	bool		isnull;
	Datum		resource_id;
	int64		id;
	int			columns[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			ncolumns = 1;
	HeapTuple	tuple;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 2)
		elog(ERROR, "waitlist_node_ids: not fired BEFORE INSERT FOR EACH ROW with two arguments");
	/* a single server: the columns' defaults draw the ids */
	if (!waitlist_tables_distributed())
		return PointerGetDatum(trigdata->tg_trigtuple);
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	id_column = trigdata->tg_trigger->tgargs[0];
	seqname = trigdata->tg_trigger->tgargs[1];
	seqid = get_relname_relid(seqname, get_namespace_oid("waitlist", false));
	id_attnum = SPI_fnumber(desc, id_column);
	resource_attnum = SPI_fnumber(desc, "resource_id");
	if (!OidIsValid(seqid) || id_attnum <= 0 || resource_attnum <= 0)
		elog(ERROR, "waitlist_node_ids: no sequence \"%s\" or column \"%s\" for \"%s\"",
			 seqname, id_column, RelationGetRelationName(rel));
	resource_id = heap_getattr(trigdata->tg_trigtuple, resource_attnum, desc, &isnull);
	if (isnull)
		return PointerGetDatum(trigdata->tg_trigtuple);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the ids that API calls are named by route to their resource's node */
	id = next_node_id(rel, resource_attnum, id_attnum, seqid, resource_id,
					  strcmp(id_column, "transition_id") != 0);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	columns[0] = id_attnum;
	values[0] = Int64GetDatum(id);
	/* an entry's place in line is its id: both grow on each node, and across moves */
	seq_attnum = strcmp(id_column, "entry_id") == 0 ? SPI_fnumber(desc, "seq") : 0;
	if (seq_attnum > 0)
	{
		columns[ncolumns] = seq_attnum;
		values[ncolumns++] = Int64GetDatum(id);
	}
	tuple = heap_modify_tuple_by_cols(trigdata->tg_trigtuple, desc, ncolumns, columns, values, nulls);
	return PointerGetDatum(tuple);
}

/*
 * waitlist.forward(resource_id, call, arguments, caller): run an API call
 * passed on from another node (src/forward.c) on this node, which holds the
 * resource, as the role that made it; its result as rows of text.  Citus
 * runs it here because it is a distributed function by resource_id.
 */
PG_FUNCTION_INFO_V1(waitlist_forward);

Datum
waitlist_forward(PG_FUNCTION_ARGS)
{
	text	   *resource_id = PG_GETARG_TEXT_PP(0);
	Oid			fn = PG_GETARG_OID(1);
	ArrayType  *arguments = PG_GETARG_ARRAYTYPE_P(2);
	Oid			caller = PG_GETARG_OID(3);
	Oid			extension = get_extension_oid("waitlist", false);
	Oid			internal_schema = get_namespace_oid("waitlist", false);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HeapTuple	proc;
	Form_pg_proc form;
	StringInfoData sql;
	Datum	   *texts;
	bool	   *text_nulls;
	int			ntexts;
	Oid		   *argtypes;
	Datum	   *values;
	char	   *nulls;
	Oid			save_user;
	int			save_context;
	int			output_level;

	if (getExtensionOfObject(ProcedureRelationId, fn) != extension ||
		get_func_namespace(fn) == internal_schema)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("waitlist.forward() runs the waitlist API only")));
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u", fn);
	form = (Form_pg_proc) GETSTRUCT(proc);

	deconstruct_array(arguments, TEXTOID, -1, false, TYPALIGN_INT, &texts, &text_nulls, &ntexts);
	if (ntexts != form->pronargs)
		elog(ERROR, "waitlist.forward(): %d arguments for a function of %d", ntexts, form->pronargs);
	argtypes = palloc(sizeof(Oid) * Max(ntexts, 1));
	values = palloc(sizeof(Datum) * Max(ntexts, 1));
	nulls = palloc(sizeof(char) * Max(ntexts, 1));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT * FROM %s(",
					 quote_qualified_identifier(get_namespace_name(form->pronamespace),
												NameStr(form->proname)));
	for (int i = 0; i < ntexts; i++)
	{
		Oid			input;
		Oid			ioparam;

		argtypes[i] = form->proargtypes.values[i];
		nulls[i] = text_nulls[i] ? 'n' : ' ';
		values[i] = (Datum) 0;
		if (!text_nulls[i])
		{
			getTypeInputInfo(argtypes[i], &input, &ioparam);
			values[i] = OidInputFunctionCall(input, TextDatumGetCString(texts[i]), ioparam, -1);
		}
		appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", i + 1);
	}
	appendStringInfoChar(&sql, ')');
	ReleaseSysCache(proc);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!waitlist_resource_is_local(resource_id))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("the shards of waitlist resource \"%s\" are not on this node",
						text_to_cstring(resource_id)),
				 errdetail("Either they moved while the call was passed on, or Citus sent the call here by an id that does not name this resource's node: one made before waitlist_distribute(), or before a split of the resource's shard put its halves on two nodes."),
				 errhint("Retry the transaction; a call by such an id goes to the right node inside a transaction block.")));

	/* the call runs as the role that made it, as on the node it was made on */
	GetUserIdAndSecContext(&save_user, &save_context);
	SetUserIdAndSecContext(caller, save_context);
	waitlist_forwarded_call_begins();
	PG_TRY();
	{
		if (SPI_execute_with_args(sql.data, ntexts, argtypes, values, nulls, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "waitlist.forward(): the call failed");
	}
	PG_FINALLY();
	{
		waitlist_forwarded_call_ends();
	}
	PG_END_TRY();
	SetUserIdAndSecContext(save_user, save_context);

	/* printed as the node reading them back expects, whatever this session's settings */
	output_level = waitlist_pin_output_settings();
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum	   *cells = palloc(sizeof(Datum) * desc->natts);
		bool	   *cell_nulls = palloc(sizeof(bool) * desc->natts);
		int			dims[1] = {desc->natts};
		int			lbs[1] = {1};
		Datum		row;
		bool		row_null = false;

		for (int c = 0; c < desc->natts; c++)
		{
			char	   *value = SPI_getvalue(SPI_tuptable->vals[r], desc, c + 1);

			cell_nulls[c] = value == NULL;
			cells[c] = value == NULL ? (Datum) 0 : CStringGetTextDatum(value);
		}
		row = PointerGetDatum(construct_md_array(cells, cell_nulls, 1, dims, lbs, TEXTOID, -1,
												 false, TYPALIGN_INT));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &row, &row_null);
	}
	AtEOXact_GUC(false, output_level);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	return (Datum) 0;
}
