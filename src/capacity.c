/*-------------------------------------------------------------------------
 *
 * capacity.c
 *	  waitlist_capacity_trigger(): the row trigger a DBA attaches to the
 *	  booking system's reservations table, so that cancelled or deleted
 *	  reservations give their capacity back to the waitlist in the same
 *	  transaction.
 *
 *	  CREATE TRIGGER reservations_waitlist
 *	      AFTER UPDATE OR DELETE ON reservations
 *	      FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger(
 *	          'concert_id', 'seats', 'status', 'cancelled');
 *
 * The arguments name columns, which are looked up in the relation's tuple
 * descriptor: no SQL is built from them.  The event id is derived from the
 * table and the row's primary key, so a replayed or repeated cancellation of
 * one row releases nothing twice.
 *
 * IDENTIFICATION
 *	  src/capacity.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/index.h"
#include "commands/trigger.h"
#include "common/md5.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "waitlist.h"

PG_FUNCTION_INFO_V1(waitlist_capacity_trigger);

#define CAPACITY_TRIGGER_USAGE \
	"Pass the resource column, the quantity column or a number, the status column and the status value that means cancelled."

static int
column_number(Relation rel, const char *column)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), column);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						column, RelationGetRelationName(rel)),
				 errhint(CAPACITY_TRIGGER_USAGE)));
	return attnum;
}

static bool
is_number(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/*
 * "schema.table:key1,key2", the row's identity; hashed when it would be
 * longer than an event id may be.
 */
static text *
row_event_id(Relation rel, HeapTuple row)
{
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	StringInfoData buf;
	int			i;

	if (!OidIsValid(pkey))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s\" has no primary key", RelationGetRelationName(rel)),
				 errdetail("waitlist_capacity_trigger derives each release's event id from the row's primary key.")));

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s.%s:",
					 get_namespace_name(RelationGetNamespace(rel)),
					 RelationGetRelationName(rel));
	index = relation_open(pkey, AccessShareLock);
	for (i = 0; i < index->rd_index->indnkeyatts; i++)
	{
		char	   *value = SPI_getvalue(row, RelationGetDescr(rel),
										 index->rd_index->indkey.values[i]);

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, value ? value : "");
	}
	relation_close(index, AccessShareLock);

	if (buf.len > WAITLIST_MAX_ID_BYTES)
	{
		char		hex[33];
		const char *errstr = NULL;

		if (!pg_md5_hash(buf.data, buf.len, hex, &errstr))
			elog(ERROR, "could not compute MD5 hash: %s", errstr);
		resetStringInfo(&buf);
		appendStringInfo(&buf, "%s.%s:md5:%s",
						 get_namespace_name(RelationGetNamespace(rel)),
						 RelationGetRelationName(rel), hex);
		if (buf.len > WAITLIST_MAX_ID_BYTES)
		{
			resetStringInfo(&buf);
			appendStringInfo(&buf, "%u:md5:%s", RelationGetRelid(rel), hex);
		}
	}
	return cstring_to_text_with_len(buf.data, buf.len);
}

static bool
status_is(HeapTuple row, TupleDesc tupdesc, int attnum, const char *value)
{
	char	   *status = SPI_getvalue(row, tupdesc, attnum);

	return status != NULL && strcmp(status, value) == 0;
}

Datum
waitlist_capacity_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	char	  **args;
	int			resource_att;
	int			quantity_att = 0;
	int64		quantity = 0;
	int			status_att;
	const char *cancelled;
	HeapTuple	row;
	char	   *resource;
	WaitlistApiCall call;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("waitlist_capacity_trigger must be fired AFTER UPDATE OR DELETE FOR EACH ROW")));
	if (trigdata->tg_trigger->tgnargs != 4)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("waitlist_capacity_trigger takes 4 arguments, got %d",
						trigdata->tg_trigger->tgnargs),
				 errhint(CAPACITY_TRIGGER_USAGE)));

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	args = trigdata->tg_trigger->tgargs;
	resource_att = column_number(rel, args[0]);
	if (is_number(args[1]))
		quantity = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(args[1])));
	else
		quantity_att = column_number(rel, args[1]);
	status_att = column_number(rel, args[2]);
	cancelled = args[3];

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		/* only the update that cancels releases */
		if (!status_is(trigdata->tg_newtuple, tupdesc, status_att, cancelled) ||
			status_is(trigdata->tg_trigtuple, tupdesc, status_att, cancelled))
			return PointerGetDatum(NULL);
		row = trigdata->tg_newtuple;
	}
	else
	{
		/* deleting a reservation cancelled before releases nothing more */
		if (status_is(trigdata->tg_trigtuple, tupdesc, status_att, cancelled))
			return PointerGetDatum(NULL);
		row = trigdata->tg_trigtuple;
	}

	/* rows of resources that have no waitlist are none of our business */
	resource = SPI_getvalue(row, tupdesc, resource_att);
	if (resource == NULL || *resource == '\0' || strlen(resource) > WAITLIST_MAX_ID_BYTES)
		return PointerGetDatum(NULL);
	if (quantity_att > 0)
	{
		char	   *value = SPI_getvalue(row, tupdesc, quantity_att);

		if (value == NULL)
			return PointerGetDatum(NULL);
		quantity = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(value)));
	}
	if (quantity == 0)
		return PointerGetDatum(NULL);
	waitlist_check_release_quantity(quantity);

	waitlist_api_begin(&call);
	(void) waitlist_release_units(cstring_to_text(resource), (int32) quantity,
								  row_event_id(rel, row), true);
	waitlist_api_end(&call);

	return PointerGetDatum(NULL);
}
