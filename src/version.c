/*-------------------------------------------------------------------------
 *
 * version.c
 *	  Which version of the waitlist schema the current database has, so
 *	  that one shared library can serve a database still on an older
 *	  version until ALTER EXTENSION waitlist UPDATE is run.
 *
 * The library is replaced when the package is upgraded, but each database
 * keeps the schema of the version it was created or last updated at.  Code
 * that depends on an object added after 1.0 asks here first and either
 * takes its 1.0 path or refuses with a hint to update, as
 * contrib/pg_stat_statements does with its per-version entry points.
 *
 * IDENTIFICATION
 *	  src/version.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "waitlist.h"

/*
 * The answer for the current command: only a command (ALTER EXTENSION) can
 * change it, so the hot paths pay one catalog lookup per statement at most.
 */
static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
static CommandId cached_cid = InvalidCommandId;
static int	cached_version = 0;

/* "1.1" -> 101; anything unparsable -> 0 */
static int
parse_version(const char *s)
{
	int			major,
				minor;

	if (sscanf(s, "%d.%d", &major, &minor) != 2 || major < 0 || minor < 0 || minor > 99)
		return 0;
	return major * 100 + minor;
}

/*
 * The installed version of extension waitlist in this database as
 * major * 100 + minor (1.0 -> 100, 1.1 -> 101), or 0 if it is not installed.
 */
int
waitlist_schema_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	int			version = 0;

	if (cached_lxid != InvalidLocalTransactionId && cached_lxid == MyProc->lxid &&
		cached_cid == GetCurrentCommandId(false))
		return cached_version;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("waitlist"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		datum = heap_getattr(tuple, Anum_pg_extension_extversion,
										 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = parse_version(TextDatumGetCString(datum));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	cached_lxid = MyProc->lxid;
	cached_cid = GetCurrentCommandId(false);
	cached_version = version;
	return version;
}

/*
 * Refuse "what" (a function name, for the message) unless the database has
 * at least the given schema version.
 */
void
waitlist_require_schema_version(int version, const char *what)
{
	int			installed = waitlist_schema_version();

	if (installed < version)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires version %d.%d of extension \"waitlist\"",
						what, version / 100, version % 100),
				 errdetail("This database has version %d.%d installed; the server's library is version %s.",
						   installed / 100, installed % 100, WAITLIST_VERSION),
				 errhint("Run ALTER EXTENSION waitlist UPDATE.")));
}
