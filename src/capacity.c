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
 * The trigger runs inside the booking system's own statement, so it fails
 * that statement only for a configuration error (how the trigger is
 * attached, its arguments, the table's columns and key) or for a row of a
 * waitlisted resource whose quantity cannot be released; any other row the
 * waitlist cannot use is the booking system's business and is ignored.
 *
 * IDENTIFICATION
 *	  src/capacity.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/partition.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "engine.h"

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
 * A quantity as the column's type prints it: an integer, or a whole number
 * with zeros after the point (numeric(10,2) prints 2 as "2.00").  Works alike
 * for every integer, numeric and floating-point type and their domains, and
 * for text holding digits as 1.0 accepted.  False for anything else: a
 * fraction, NaN, an exponent, or a value beyond bigint.
 */
static bool
parse_quantity(const char *s, int64 *quantity)
{
	bool		negative = false;
	uint64		value = 0;
	const char *digits;

	if (*s == '-')
	{
		negative = true;
		s++;
	}
	digits = s;
	for (; *s >= '0' && *s <= '9'; s++)
	{
		if (value > (PG_UINT64_MAX - 9) / 10)
			return false;
		value = value * 10 + (*s - '0');
	}
	if (s == digits || value > (uint64) PG_INT64_MAX)
		return false;
	if (*s == '.')
		for (s++; *s == '0'; s++)
			;
	if (*s != '\0')
		return false;
	*quantity = negative ? -(int64) value : (int64) value;
	return true;
}

/*
 * The status value that means cancelled, in the form the status column's
 * type prints it, so that 'cancelled' matches a char(12) column's padded
 * value and 'true' a boolean's "t".  A value the type cannot hold is a
 * configuration error, raised by the type's input function.
 */
static char *
cancelled_value(TupleDesc tupdesc, int attnum, const char *value)
{
	Form_pg_attribute att = TupleDescAttr(tupdesc, attnum - 1);
	Oid			input,
				ioparam,
				output;
	bool		varlena;
	Datum		datum;

	getTypeInputInfo(att->atttypid, &input, &ioparam);
	datum = OidInputFunctionCall(input, (char *) value, ioparam, att->atttypmod);
	getTypeOutputInfo(att->atttypid, &output, &varlena);
	return OidOutputFunctionCall(output, datum);
}

static bool
status_is(HeapTuple row, TupleDesc tupdesc, int attnum, const char *value)
{
	char	   *status = SPI_getvalue(row, tupdesc, attnum);

	return status != NULL && strcmp(status, value) == 0;
}

/*
 * One key value of an event id: as it prints when that cannot be confused
 * with a separator or a quoted value, otherwise double-quoted with quotes
 * doubled, so that distinct keys never give the same id (1.0 joined the
 * values with bare commas: ('a,b', 'c') and ('a', 'b,c') collided).
 */
static void
append_key_value(StringInfo buf, const char *value)
{
	const char *p;

	if (value == NULL)
		return;					/* a NULL is the only bare empty value */
	if (*value != '\0' && strpbrk(value, ",\"") == NULL)
	{
		appendStringInfoString(buf, value);
		return;
	}
	appendStringInfoChar(buf, '"');
	for (p = value; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(buf, '"');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}

/*
 * The row's identity, "schema.table:key1,key2": the names quoted as SQL
 * identifiers, the table being the partitioned table a partition belongs to
 * when the key is that table's (a row keeps its identity wherever it
 * lives).  The values print as the frame's pinned settings say, whatever
 * DateStyle or TimeZone the session that fires the trigger has.  An id longer than an event
 * id may be is replaced by "sha256:" and the hash of the whole, which no
 * unhashed id can equal (an unquoted identifier is followed by a dot).
 */
static text *
row_event_id(Relation rel, HeapTuple row)
{
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	/* on Citus, a distributed table's rows are named by it, not its shard */
	Oid			table = waitlist_logical_relation(RelationGetRelid(rel));
	Relation	index;
	StringInfoData buf;
	int			i;

	if (!OidIsValid(pkey))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s\" has no primary key", RelationGetRelationName(rel)),
				 errdetail("waitlist_capacity_trigger derives each release's event id from the row's primary key.")));

	/*
	 * A partition's primary key identifies its rows across the tree only if
	 * it is the partitioned table's: partitions of a table without one may
	 * each have their own, and rows of two partitions the same key.
	 */
	if (rel->rd_rel->relispartition)
	{
		Oid			root = llast_oid(get_partition_ancestors(table));
		Relation	rootrel = relation_open(root, AccessShareLock);

		if (OidIsValid(RelationGetPrimaryKeyIndex(rootrel)))
			table = root;
		relation_close(rootrel, AccessShareLock);
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s:",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(table)),
												get_rel_name(table)));
	index = relation_open(pkey, AccessShareLock);
	for (i = 0; i < index->rd_index->indnkeyatts; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		append_key_value(&buf, SPI_getvalue(row, RelationGetDescr(rel),
											index->rd_index->indkey.values[i]));
	}
	relation_close(index, AccessShareLock);

	if (buf.len > WAITLIST_MAX_ID_BYTES)
	{
		pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
		uint8		digest[PG_SHA256_DIGEST_LENGTH];
		char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];

		if (pg_cryptohash_init(ctx) < 0 ||
			pg_cryptohash_update(ctx, (uint8 *) buf.data, buf.len) < 0 ||
			pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
			elog(ERROR, "could not compute SHA-256 hash: %s", pg_cryptohash_error(ctx));
		pg_cryptohash_free(ctx);
		hex[hex_encode((char *) digest, sizeof(digest), hex)] = '\0';
		resetStringInfo(&buf);
		appendStringInfo(&buf, "sha256:%s", hex);
	}
	return cstring_to_text_with_len(buf.data, buf.len);
}

/*
 * Release the units of a cancelled or deleted row, if it is a waitlisted
 * resource's.  quantity_att is the quantity column, or 0 for a fixed
 * quantity.  Runs inside the API frame.
 */
static void
release_row(Relation rel, HeapTuple row, int resource_att, int quantity_att,
			int64 quantity)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	char	   *resource;
	char	   *quantity_text = NULL;
	bool		quantity_ok = true;
	text	   *resource_id;
	WaitlistResource res;

	/* no waitlist can have such an id: none of our business */
	resource = SPI_getvalue(row, tupdesc, resource_att);
	if (resource == NULL || *resource == '\0' || strlen(resource) > WAITLIST_MAX_ID_BYTES)
		return;
	if (quantity_att > 0)
	{
		quantity_text = SPI_getvalue(row, tupdesc, quantity_att);
		if (quantity_text == NULL)
			return;
		quantity_ok = parse_quantity(quantity_text, &quantity);
	}
	if (quantity_ok && quantity == 0)
		return;

	/*
	 * Rows of resources that have no waitlist are ignored whatever their
	 * quantity; only a waitlisted resource's release is held to the bounds
	 * (the release itself passes over an unknown resource).
	 */
	resource_id = cstring_to_text(resource);
	if (!quantity_ok || quantity < 0 || quantity > WAITLIST_MAX_RELEASE_QUANTITY)
	{
		if (!waitlist_read_resource_ext(resource_id, &res, true))
			return;
		if (!quantity_ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("quantity %s is not a whole number of units", quantity_text),
					 errdetail("A release must return between 1 and %d units.",
							   WAITLIST_MAX_RELEASE_QUANTITY)));
		waitlist_check_release_quantity(quantity);
	}
	(void) waitlist_release_units(resource_id, (int32) quantity,
								  row_event_id(rel, row), true);
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
	cancelled = cancelled_value(tupdesc, status_att, args[3]);

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
		/*
		 * An UPDATE that moves a row to another partition fires AFTER DELETE
		 * on the old partition (and AFTER INSERT on the new one, never AFTER
		 * UPDATE); the old version then carries the moved-partitions mark
		 * instead of a successor's address.  The reservation still exists.
		 */
		if (HeapTupleHeaderIndicatesMovedPartitions(trigdata->tg_trigtuple->t_data))
			return PointerGetDatum(NULL);
		/* deleting a reservation cancelled before releases nothing more */
		if (status_is(trigdata->tg_trigtuple, tupdesc, status_att, cancelled))
			return PointerGetDatum(NULL);
		row = trigdata->tg_trigtuple;
	}

	/*
	 * The row's values print as the frame pins the settings: whatever
	 * DateStyle or TimeZone the session has, a row names the same resource,
	 * quantity and event id.
	 */
	waitlist_api_begin(&call);
	release_row(rel, row, resource_att, quantity_att, quantity);
	waitlist_api_end(&call);

	return PointerGetDatum(NULL);
}
