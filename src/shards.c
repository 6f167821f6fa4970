/*-------------------------------------------------------------------------
 *
 * shards.c
 *	  The extension's statements on a Citus cluster (waitlist_distribute()):
 *	  whether the tables are distributed, and how a kept statement is made
 *	  to run well there.
 *
 * Citus plans a statement on distributed tables as a distributed query, and
 * our per-resource statements (writable CTEs over several tables of one
 * resource) come out of that as several steps with intermediate results: a
 * join took 15 ms instead of a fraction of one.  So on the node that holds
 * a resource's shards, a statement keyed by the resource (it names it as
 * "resource_id = $N") runs against the shards themselves, as the plain
 * local tables they are: Citus does just this when it executes a query on
 * a shard, and the shards' own triggers, constraints and indexes apply as
 * on a single server.  A statement of a resource held by another node goes
 * through Citus, which sends it there.
 *
 * The same rewriting gives a node's promotion worker the node's own rows:
 * its scans of every resource read the union of the node's shards
 * (node-scope statements).
 *
 * IDENTIFICATION
 *	  src/shards.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "api.h"

/*
 * Whether waitlist_distribute() has made the extension's tables Citus
 * tables.  Asked before every kept statement runs, so the answer is kept
 * until a relation changes: distributing a table invalidates it.
 */
static int	tables_distributed = -1;	/* -1: not known */
static bool distribution_callback_registered = false;

static void
forget_distribution(Datum arg, Oid relid)
{
	tables_distributed = -1;
}

static bool
entry_is_citus_table(void)
{
	Oid			nspid = get_namespace_oid("waitlist", true);
	Oid			entry_relid = OidIsValid(nspid) ? get_relname_relid("entry", nspid) : InvalidOid;
	Oid			partition_relid = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	Relation	partition;
	SysScanDesc scan;
	ScanKeyData key;
	bool		found;

	if (!OidIsValid(entry_relid) || !OidIsValid(partition_relid))
		return false;
	/* pg_dist_partition's first column is the table (logicalrelid) */
	partition = table_open(partition_relid, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(entry_relid));
	scan = systable_beginscan(partition, InvalidOid, false, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(partition, AccessShareLock);
	return found;
}

bool
waitlist_tables_distributed(void)
{
	if (tables_distributed < 0)
	{
		if (!distribution_callback_registered)
		{
			CacheRegisterRelcacheCallback(forget_distribution, (Datum) 0);
			distribution_callback_registered = true;
		}
		tables_distributed = entry_is_citus_table();
	}
	return tables_distributed == 1;
}

static bool
is_identifier_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* whether the word after a table reference is its alias */
static bool
is_alias(const char *word, int len)
{
	static const char *const keywords[] = {
		"WHERE", "ORDER", "GROUP", "LIMIT", "JOIN", "LEFT", "INNER", "CROSS", "ON",
		"UNION", "FOR", "HAVING", "WINDOW", "USING", "SET", NULL
	};

	if (len == 0 || !is_identifier_char(word[0]) || (word[0] >= '0' && word[0] <= '9'))
		return false;
	for (int i = 0; keywords[i] != NULL; i++)
		if ((int) strlen(keywords[i]) == len && pg_strncasecmp(word, keywords[i], len) == 0)
			return false;
	return true;
}

/*
 * On Citus, an UPDATE or DELETE of a distributed table may not call a
 * volatile function (clock_timestamp()), nor a stable one (now()) under a
 * CASE or COALESCE: the statement goes to a shard as it is, and Citus
 * cannot tell on which node the function would run.  So each of our
 * statements gets both times as parameters after its own, read when it
 * runs: now() is the transaction's start as ever, clock_timestamp() the
 * moment the statement starts, the same for all its rows.
 */
#define NOW_SQL		"pg_catalog.now()"
#define CLOCK_SQL	"pg_catalog.clock_timestamp()"

char *
waitlist_time_parameters_sql(const char *sql, int nargs, bool *substituted)
{
	StringInfoData buf;
	const char *p = sql;

	*substituted = false;
	initStringInfo(&buf);
	while (*p != '\0')
	{
		if (strncmp(p, NOW_SQL, strlen(NOW_SQL)) == 0)
		{
			appendStringInfo(&buf, "$%d", nargs + 1);
			p += strlen(NOW_SQL);
			*substituted = true;
		}
		else if (strncmp(p, CLOCK_SQL, strlen(CLOCK_SQL)) == 0)
		{
			appendStringInfo(&buf, "$%d", nargs + 2);
			p += strlen(CLOCK_SQL);
			*substituted = true;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/*
 * The shards of the extension's Citus tables: the hash ranges of the
 * resources' shards (every table is co-located with waitlist.resource, so
 * shard i of each table holds the same resources), which of them this node
 * holds, and each table's shard names.  Loaded on first use and forgotten
 * when Citus's metadata of one of the tables changes (a shard moved).
 */
typedef struct ShardTable
{
	char	   *name;			/* "waitlist.entry" */
	Oid			relid;
	bool		reference;		/* one local placement serves every shard */
	char	  **shard_names;	/* by shard index; quoted, qualified */
} ShardTable;

typedef struct ShardMap
{
	int			nshards;
	int32	   *hash_min;		/* ascending */
	int32	   *hash_max;
	bool	   *local;
	int32	   *group;			/* the Citus group of the node holding it */
	int			nroutes;		/* the nodes holding shards, one key each */
	char	  **route_keys;
	int			ntables;
	ShardTable *tables;
} ShardMap;

static ShardMap *shard_map = NULL;
static MemoryContext shard_map_cxt = NULL;

/* bumped when the map is forgotten: the statements made from it go too */
static uint64 shard_map_generation = 1;

static Oid	citus_catalog_relids[3];

static void
forget_shard_map(Datum arg, Oid relid)
{
	bool		relevant = !OidIsValid(relid);

	for (int i = 0; i < (int) lengthof(citus_catalog_relids) && !relevant; i++)
		relevant = relid == citus_catalog_relids[i];
	for (int i = 0; shard_map != NULL && i < shard_map->ntables && !relevant; i++)
		relevant = relid == shard_map->tables[i].relid;
	if (relevant && shard_map != NULL)
	{
		shard_map = NULL;
		shard_map_generation++;
	}
}

static const char *shard_map_sql =
"SELECT n.nspname::pg_catalog.text OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.relname::pg_catalog.text,"
"       d.logicalrelid::pg_catalog.oid, d.partmethod OPERATOR(pg_catalog.=) 'n',"
"       s.shardminvalue::pg_catalog.int4, s.shardmaxvalue::pg_catalog.int4,"
"       pg_catalog.shard_name(s.logicalrelid, s.shardid),"
"       p.groupid OPERATOR(pg_catalog.=) (SELECT groupid FROM pg_catalog.pg_dist_local_group),"
"       p.groupid"
"  FROM pg_catalog.pg_dist_partition d"
"  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.logicalrelid"
"  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
"  JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid OPERATOR(pg_catalog.=) d.logicalrelid"
"  JOIN pg_catalog.pg_dist_placement p ON p.shardid OPERATOR(pg_catalog.=) s.shardid"
" WHERE n.nspname OPERATOR(pg_catalog.=) ANY (ARRAY['waitlist', 'waitlist_archive'])"
"   AND (d.partmethod OPERATOR(pg_catalog.=) 'h'"
"        OR p.groupid OPERATOR(pg_catalog.=) (SELECT groupid FROM pg_catalog.pg_dist_local_group))"
" ORDER BY 1, s.shardminvalue::pg_catalog.int4";

static ShardMap *
load_shard_map(void)
{
	static bool callback_registered = false;
	int			rc;
	SPITupleTable *rows;
	uint64		nrows;
	MemoryContext old;
	ShardMap   *map;
	int			t = -1;
	int			index = 0;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_shard_map, (Datum) 0);
		callback_registered = true;
	}
	citus_catalog_relids[0] = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	citus_catalog_relids[1] = get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE);
	citus_catalog_relids[2] = get_relname_relid("pg_dist_placement", PG_CATALOG_NAMESPACE);

	rc = SPI_execute(shard_map_sql, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed for the shard map: %s", SPI_result_code_string(rc));
	rows = SPI_tuptable;
	nrows = SPI_processed;

	if (shard_map_cxt == NULL)
		shard_map_cxt = AllocSetContextCreate(TopMemoryContext, "waitlist shard map",
											  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(shard_map_cxt);
	old = MemoryContextSwitchTo(shard_map_cxt);
	map = palloc0(sizeof(ShardMap));
	map->tables = palloc0(sizeof(ShardTable) * (nrows + 1));
	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	row = rows->vals[i];
		TupleDesc	desc = rows->tupdesc;
		char	   *name = SPI_getvalue(row, desc, 1);
		bool		isnull;

		if (t < 0 || strcmp(map->tables[t].name, name) != 0)
		{
			t++;
			map->tables[t].name = pstrdup(name);
			map->tables[t].relid = DatumGetObjectId(SPI_getbinval(row, desc, 2, &isnull));
			map->tables[t].reference = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull));
			map->tables[t].shard_names = palloc0(sizeof(char *) * (nrows + 1));
			map->ntables = t + 1;
			index = 0;
		}
		else
			index++;
		map->tables[t].shard_names[index] = pstrdup(SPI_getvalue(row, desc, 6));
		if (strcmp(name, "waitlist.resource") == 0)
		{
			if (map->hash_min == NULL)
			{
				map->hash_min = palloc0(sizeof(int32) * nrows);
				map->hash_max = palloc0(sizeof(int32) * nrows);
				map->local = palloc0(sizeof(bool) * nrows);
				map->group = palloc0(sizeof(int32) * nrows);
			}
			map->group[index] = DatumGetInt32(SPI_getbinval(row, desc, 8, &isnull));
			map->hash_min[index] = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
			map->hash_max[index] = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
			map->local[index] = DatumGetBool(SPI_getbinval(row, desc, 7, &isnull));
			map->nshards = index + 1;
		}
	}
	MemoryContextSwitchTo(old);
	return map;
}

/*
 * The index of the shard Citus puts a distribution value in; -1 if none.
 * The hash is Citus's of a text distribution column: the type's hash
 * function under the column's (default) collation.
 */
int
waitlist_shard_index_of(text *key)
{
	int32		hash;

	if (shard_map == NULL)
		shard_map = load_shard_map();
	hash = DatumGetInt32(DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID,
												 PointerGetDatum(key)));
	for (int i = 0; i < shard_map->nshards; i++)
		if (hash >= shard_map->hash_min[i] && hash <= shard_map->hash_max[i])
			return i;
	return -1;
}

/* The index of the resource's shard if this node holds it, else -1. */
static int
local_shard_index(text *resource_id)
{
	int			index = waitlist_shard_index_of(resource_id);

	return index >= 0 && shard_map->local[index] ? index : -1;
}

/*
 * The table of ours whose qualified name starts at p in sql (a whole name,
 * not part of a longer one), and its length; NULL if none does.
 */
static const ShardTable *
table_named_at(const char *sql, const char *p, size_t *len)
{
	if (p > sql && is_identifier_char(p[-1]))
		return NULL;
	for (int t = 0; t < shard_map->ntables; t++)
	{
		*len = strlen(shard_map->tables[t].name);
		if (strncmp(p, shard_map->tables[t].name, *len) == 0 && !is_identifier_char(p[*len]))
			return &shard_map->tables[t];
	}
	return NULL;
}

/* The statement's text with each table of ours named by its shard "index". */
static char *
shard_local_sql(const char *sql, int index)
{
	StringInfoData buf;
	const char *p = sql;

	initStringInfo(&buf);
	while (*p != '\0')
	{
		size_t		len;
		const ShardTable *table = table_named_at(sql, p, &len);

		if (table == NULL)
		{
			appendStringInfoChar(&buf, *p++);
			continue;
		}
		appendStringInfoString(&buf, table->shard_names[table->reference ? 0 : index]);
		p += len;
	}
	return buf.data;
}

/*
 * Which parameter of the statement is its resource (1-based), or 0: the
 * one parameter N of type text the statement compares a resource_id with
 * ("resource_id OPERATOR(pg_catalog.=) $N"), and none other.
 */
static int
resource_parameter(const WaitlistPlan *plan)
{
	const char *marker = "resource_id OPERATOR(pg_catalog.=) $";
	const char *p = plan->sql;
	int			found = 0;

	while ((p = strstr(p, marker)) != NULL)
	{
		int			n = atoi(p + strlen(marker));

		if (found != 0 && n != found)
			return 0;
		found = n;
		p += strlen(marker);
	}
	if (found < 1 || found > plan->nargs || plan->argtypes[found - 1] != TEXTOID)
		return 0;
	return found;
}

/*
 * The statement to run for these parameters on this node, if it is keyed by
 * a resource whose shards are here: made from the statement's text with the
 * shards' names, prepared once per shard, kept until the shards change.
 * NULL when it must go through Citus.  "prepare" prepares a text as the
 * statement's own plan would be.
 */
SPIPlanPtr
waitlist_shard_local_plan(WaitlistPlan *plan, Datum *values, const char *nulls,
						  SPIPlanPtr (*prepare) (WaitlistPlan *plan, const char *sql))
{
	int			index;

	if (plan->node_scope)
		return NULL;
	if (plan->resource_parameter == 0)
		plan->resource_parameter = resource_parameter(plan) + 1;
	if (plan->resource_parameter == 1)
		return NULL;
	if (nulls != NULL && nulls[plan->resource_parameter - 2] == 'n')
		return NULL;
	index = local_shard_index(DatumGetTextPP(values[plan->resource_parameter - 2]));
	if (index < 0)
		return NULL;
	return waitlist_shard_plan(plan, index, prepare);
}

/*
 * The statement on shard "index" of each of our tables (a shard of this
 * node), prepared once and kept until the shards change.
 */
SPIPlanPtr
waitlist_shard_plan(WaitlistPlan *plan, int index,
					SPIPlanPtr (*prepare) (WaitlistPlan *plan, const char *sql))
{
	if (shard_map == NULL)
		shard_map = load_shard_map();
	Assert(index >= 0 && index < shard_map->nshards && shard_map->local[index]);
	if (plan->shard_plans_generation != shard_map_generation)
	{
		for (int i = 0; i < plan->nshard_plans; i++)
			if (plan->shard_plans[i] != NULL)
				SPI_freeplan(plan->shard_plans[i]);
		if (plan->shard_plans != NULL)
			pfree(plan->shard_plans);
		plan->nshard_plans = shard_map->nshards;
		plan->shard_plans = MemoryContextAllocZero(TopMemoryContext,
												   sizeof(SPIPlanPtr) * plan->nshard_plans);
		plan->shard_plans_generation = shard_map_generation;
	}
	if (plan->shard_plans[index] == NULL)
	{
		char	   *sql = shard_local_sql(plan->sql, index);

		plan->shard_plans[index] = prepare(plan, sql);
		pfree(sql);
	}
	return plan->shard_plans[index];
}

/* Whether this node holds the resource's shards. */
bool
waitlist_resource_is_local(text *resource_id)
{
	return local_shard_index(resource_id) >= 0;
}

/*
 * A node-scope statement's text: each table of ours, "waitlist.<table>" or
 * "waitlist_archive.<table>", becomes the union of its shards on this node,
 * under the reference's alias (or the table's name); a table with no shard
 * here becomes an empty set of its row type.
 */
char *
waitlist_node_scope_sql(const char *sql)
{
	StringInfoData buf;
	const char *p = sql;

	if (shard_map == NULL)
		shard_map = load_shard_map();
	initStringInfo(&buf);
	while (*p != '\0')
	{
		size_t		len;
		const ShardTable *table = table_named_at(sql, p, &len);
		const char *after;
		const char *bare;
		int			word_len;
		bool		any = false;

		if (table == NULL)
		{
			appendStringInfoChar(&buf, *p++);
			continue;
		}
		appendStringInfoChar(&buf, '(');
		for (int i = 0; i < (table->reference ? 1 : shard_map->nshards); i++)
		{
			if (!table->reference && !shard_map->local[i])
				continue;
			appendStringInfoString(&buf, any ? " UNION ALL SELECT * FROM " : "SELECT * FROM ");
			appendStringInfoString(&buf, table->shard_names[i]);
			any = true;
		}
		if (!any)
		{
			/* the table's row type gives its columns, and no rows */
			appendStringInfoString(&buf, "SELECT (NULL::");
			appendStringInfoString(&buf, table->name);
			appendStringInfoString(&buf, ").* WHERE false");
		}
		appendStringInfoChar(&buf, ')');
		after = p + len;
		while (*after == ' ')
			after++;
		for (word_len = 0; is_identifier_char(after[word_len]); word_len++)
			;
		bare = strchr(table->name, '.') + 1;
		if (!is_alias(after, word_len))
			appendStringInfo(&buf, " %s", bare);
		p += len;
	}
	return buf.data;
}

/*
 * The name Citus gives shard "shardid" of a table named "name":
 * "<name>_<shardid>", or, when that does not fit in a name, the name cut
 * short, "_", eight hex digits of hash_any() of the whole name, and
 * "_<shardid>" (Citus's AppendShardIdToName()).
 */
static void
citus_shard_name(const char *name, int64 shardid, char *shard_name)
{
	char		suffix[NAMEDATALEN];
	int			name_len = strlen(name);
	int			suffix_len = snprintf(suffix, sizeof(suffix), "_" INT64_FORMAT, shardid);

	if (name_len < NAMEDATALEN - suffix_len)
		snprintf(shard_name, NAMEDATALEN, "%s%s", name, suffix);
	else
		snprintf(shard_name, NAMEDATALEN, "%.*s_%.8x%s",
				 pg_mbcliplen(name, name_len, NAMEDATALEN - suffix_len - 10), name,
				 DatumGetUInt32(hash_any((const unsigned char *) name, name_len)), suffix);
}

/*
 * The Citus table whose shard "relid" is, or relid itself: a trigger on a
 * distributed table fires on its shards.  A shard's name ends in
 * "_<shard id>"; pg_dist_shard, which Citus keeps on every node, gives the
 * table of that shard id, and the name Citus would give that shard must be
 * relid's, in the table's schema: a table merely named like a shard stays
 * itself.
 */
Oid
waitlist_logical_relation(Oid relid)
{
	Oid			shard_relid = get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE);
	Oid			shard_index;
	char	   *name;
	char	   *suffix;
	char	   *end;
	int64		shardid;
	Relation	shards;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	Oid			logical = relid;

	/* without Citus, which a single server need not have, a table is itself */
	if (!OidIsValid(shard_relid))
		return relid;
	shard_index = get_relname_relid("pg_dist_shard_shardid_index", PG_CATALOG_NAMESPACE);
	name = get_rel_name(relid);
	if (!OidIsValid(shard_index) || name == NULL ||
		(suffix = strrchr(name, '_')) == NULL || suffix[1] == '\0')
		return relid;
	errno = 0;
	shardid = strtoi64(suffix + 1, &end, 10);
	if (errno != 0 || *end != '\0' || shardid <= 0)
		return relid;

	/*
	 * pg_dist_shard's first column is the table (logicalrelid), its second
	 * the shard id (systable_beginscan() takes the table's column numbers)
	 */
	shards = table_open(shard_relid, AccessShareLock);
	ScanKeyInit(&key, 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(shardid));
	scan = systable_beginscan(shards, shard_index, true, NULL, 1, &key);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		Oid			table = DatumGetObjectId(heap_getattr(tuple, 1, RelationGetDescr(shards), &isnull));
		char	   *table_name = isnull ? NULL : get_rel_name(table);
		char		expected[NAMEDATALEN];

		if (table_name != NULL && get_rel_namespace(table) == get_rel_namespace(relid))
		{
			citus_shard_name(table_name, shardid, expected);
			if (strcmp(expected, name) == 0)
				logical = table;
		}
	}
	systable_endscan(scan);
	table_close(shards, AccessShareLock);
	return logical;
}

/* The number of shard indexes, and whether this node holds shard "index". */
int
waitlist_shard_count(void)
{
	if (shard_map == NULL)
		shard_map = load_shard_map();
	return shard_map->nshards;
}

bool
waitlist_shard_is_local(int index)
{
	if (shard_map == NULL)
		shard_map = load_shard_map();
	return index >= 0 && index < shard_map->nshards && shard_map->local[index];
}

/*
 * One key per node that holds shards: a text that Citus hashes into one of
 * that node's shards, so that a distributed function called with it runs
 * there (outbox claims, which are about no one resource, go to each node
 * so).  Found by trying "waitlist-node-0", "waitlist-node-1", ...: a node
 * holding k of n shards takes about n / k tries.  The keys are the
 * caller's copy, in the current memory context: the shard map they come
 * from may be reloaded while the caller calls the nodes.
 */
int
waitlist_node_route_keys(char ***keys)
{
	if (shard_map == NULL)
		shard_map = load_shard_map();
	if (shard_map->route_keys == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(shard_map_cxt);
		int32	   *groups = palloc(sizeof(int32) * Max(shard_map->nshards, 1));
		char	  **found = palloc0(sizeof(char *) * Max(shard_map->nshards, 1));
		int			ngroups = 0;

		for (int i = 0; i < shard_map->nshards; i++)
		{
			bool		seen = false;

			for (int g = 0; g < ngroups && !seen; g++)
				seen = groups[g] == shard_map->group[i];
			if (!seen)
				groups[ngroups++] = shard_map->group[i];
		}
		for (int tries = 0; tries < 1000000; tries++)
		{
			char	   *key = psprintf("waitlist-node-%d", tries);
			int			index = waitlist_shard_index_of(cstring_to_text(key));
			bool		all = true;

			for (int g = 0; g < ngroups; g++)
			{
				if (found[g] == NULL && index >= 0 && shard_map->group[index] == groups[g])
					found[g] = key;
				all = all && found[g] != NULL;
			}
			if (all)
				break;
		}
		for (int g = 0; g < ngroups; g++)
			if (found[g] == NULL)
				elog(ERROR, "no route key found for Citus group %d", groups[g]);
		shard_map->route_keys = found;
		shard_map->nroutes = ngroups;
		MemoryContextSwitchTo(old);
	}
	*keys = palloc(sizeof(char *) * Max(shard_map->nroutes, 1));
	for (int g = 0; g < shard_map->nroutes; g++)
		(*keys)[g] = pstrdup(shard_map->route_keys[g]);
	return shard_map->nroutes;
}
