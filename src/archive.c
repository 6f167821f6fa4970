/*-------------------------------------------------------------------------
 *
 * archive.c
 *	  Retention: moving what is over (terminal entries with everything that
 *	  belongs to them, processed capacity events) from the hot tables of
 *	  schema waitlist to the tables of schema waitlist_archive.
 *
 * One call of waitlist_archive() moves one batch in the caller's
 * transaction, so the locks it takes (rows nobody else changes any more,
 * and the resource_totals rows of the resources concerned) last one batch;
 * the procedure waitlist_archive_all() commits between batches.  An entry
 * moves together with its offers, their outbox rows, accept requests,
 * extensions and the transitions of the entry and its offers, so every
 * invariant
 * waitlist_check() reads either finds all of them hot or none; the units
 * they counted go to waitlist_archive.resource_totals in the same
 * statement.
 *
 * An entry stays hot while any outbox row of its offers is undelivered
 * (PENDING), while it has an OPEN offer, or while another transaction holds
 * it: never is a row the relay or the API may still act on archived.
 *
 * IDENTIFICATION
 *	  src/archive.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(waitlist_archive);

/* Bounds of waitlist_archive()'s arguments (docs/operations.md "Retention"). */
#define WAITLIST_MAX_ARCHIVE_BATCH	100000

#define TERMINAL_ENTRY_STATES "ARRAY['ACCEPTED', 'DECLINED', 'EXPIRED', 'CANCELLED']"

/*
 * Terminal entries last changed before the cutoff, oldest first, with no
 * open offer and no undelivered outbox row; entries another transaction
 * holds are left for a later batch.  The state condition is
 * entry_terminal_idx's predicate, word for word.
 */
static WaitlistPlan candidates_plan = {
	"SELECT e.resource_id, e.entry_id FROM waitlist.entry e"
	" WHERE e.state OPERATOR(pg_catalog.=) ANY (" TERMINAL_ENTRY_STATES ")"
	"   AND e.updated_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"   AND NOT EXISTS (SELECT 1 FROM waitlist.offer o"
	"       LEFT JOIN waitlist.outbox b ON b.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"            AND b.offer_id OPERATOR(pg_catalog.=) o.offer_id"
	"            AND b.state OPERATOR(pg_catalog.=) 'PENDING'"
	"       WHERE o.resource_id OPERATOR(pg_catalog.=) e.resource_id"
	"         AND o.entry_id OPERATOR(pg_catalog.=) e.entry_id"
	"         AND (o.state OPERATOR(pg_catalog.=) 'OPEN' OR b.outbox_id IS NOT NULL))"
	" ORDER BY e.updated_at LIMIT $2"
	" FOR UPDATE OF e SKIP LOCKED",
	2, {INTERVALOID, INT4OID}
};

/*
 * Lock every outbox row of the candidates' offers, waiting for a retry
 * (DEAD -> PENDING) in flight.  A row locked after a change committed
 * comes back as it is now, so a revived row keeps its entry hot; the state
 * is filtered on here, after locking, because a condition on it would be
 * evaluated against the snapshot's (dead) version and skip the row
 * unlocked.
 */
static WaitlistPlan lock_outbox_plan = {
	"SELECT c.resource_id, c.entry_id, b.state FROM"
	"  ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int8[])) AS c(resource_id, entry_id)"
	"  JOIN waitlist.offer o ON o.resource_id OPERATOR(pg_catalog.=) c.resource_id"
	"   AND o.entry_id OPERATOR(pg_catalog.=) c.entry_id"
	"  JOIN waitlist.outbox b ON b.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"   AND b.offer_id OPERATOR(pg_catalog.=) o.offer_id"
	" FOR UPDATE OF b",
	2, {TEXTARRAYOID, INT8ARRAYOID}
};

#define BATCH_CTE \
	"WITH c AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int8[]))" \
	"           AS c(resource_id, entry_id)) "

/* Run by waitlist_move_transitions(): nothing but the two logs in it. */
static WaitlistPlan move_transitions_plan = {
	BATCH_CTE
	", ids AS ("
	"  SELECT c.resource_id, 'entry'::pg_catalog.text AS entity, c.entry_id AS entity_id FROM c"
	"  UNION ALL"
	"  SELECT o.resource_id, 'offer', o.offer_id FROM c"
	"  JOIN waitlist.offer o ON o.resource_id OPERATOR(pg_catalog.=) c.resource_id"
	"   AND o.entry_id OPERATOR(pg_catalog.=) c.entry_id"
	"), moved AS ("
	"  DELETE FROM waitlist.transition t USING ids i"
	"  WHERE t.resource_id OPERATOR(pg_catalog.=) i.resource_id"
	"    AND t.entity OPERATOR(pg_catalog.=) i.entity"
	"    AND t.entity_id OPERATOR(pg_catalog.=) i.entity_id"
	"  RETURNING t.*"
	") INSERT INTO waitlist_archive.transition SELECT m.*, pg_catalog.now() FROM moved m",
	2, {TEXTARRAYOID, INT8ARRAYOID}, WAITLIST_CUSTOM_PLAN
};

/*
 * The entries and what hangs off their offers, in one statement (the
 * foreign key from offer to entry is checked at its end, when both are
 * gone), and what they counted added to resource_totals: the units
 * waitlist_check() balances and the offer outcomes the metrics' counters
 * go on counting.
 */
static WaitlistPlan move_entries_plan = {
	BATCH_CTE
	", o AS ("
	"  DELETE FROM waitlist.offer o USING c"
	"  WHERE o.resource_id OPERATOR(pg_catalog.=) c.resource_id"
	"    AND o.entry_id OPERATOR(pg_catalog.=) c.entry_id"
	"  RETURNING o.*"
	"), oa AS ("
	"  INSERT INTO waitlist_archive.offer SELECT o.*, pg_catalog.now() FROM o"
	"), b AS ("
	"  DELETE FROM waitlist.outbox b USING o"
	"  WHERE b.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"    AND b.offer_id OPERATOR(pg_catalog.=) o.offer_id"
	"  RETURNING b.*"
	"), ba AS ("
	"  INSERT INTO waitlist_archive.outbox SELECT b.*, pg_catalog.now() FROM b"
	"), r AS ("
	"  DELETE FROM waitlist.accept_request r USING o"
	"  WHERE r.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"    AND r.offer_id OPERATOR(pg_catalog.=) o.offer_id"
	"  RETURNING r.*"
	"), ra AS ("
	"  INSERT INTO waitlist_archive.accept_request SELECT r.*, pg_catalog.now() FROM r"
	"), x AS ("
	"  DELETE FROM waitlist.offer_extension x USING o"
	"  WHERE x.resource_id OPERATOR(pg_catalog.=) o.resource_id"
	"    AND x.offer_id OPERATOR(pg_catalog.=) o.offer_id"
	"  RETURNING x.*"
	"), xa AS ("
	"  INSERT INTO waitlist_archive.offer_extension SELECT x.*, pg_catalog.now() FROM x"
	"), e AS ("
	"  DELETE FROM waitlist.entry e USING c"
	"  WHERE e.resource_id OPERATOR(pg_catalog.=) c.resource_id"
	"    AND e.entry_id OPERATOR(pg_catalog.=) c.entry_id"
	"  RETURNING e.*"
	"), ea AS ("
	"  INSERT INTO waitlist_archive.entry SELECT e.*, pg_catalog.now() FROM e"
	"), totals AS ("
	"  INSERT INTO waitlist_archive.resource_totals AS t"
	"    (resource_id, entries, offers_accepted, offers_failed,"
	"     offers_declined, offers_expired, offers_expired_unseen, units_accepted, units_failed)"
	"  SELECT x.resource_id, pg_catalog.sum(x.entries), pg_catalog.sum(x.accepted),"
	"         pg_catalog.sum(x.failed), pg_catalog.sum(x.declined),"
	"         pg_catalog.sum(x.expired), pg_catalog.sum(x.expired_unseen),"
	"         pg_catalog.sum(x.units_accepted), pg_catalog.sum(x.units_failed)"
	"  FROM (SELECT e.resource_id, 1 AS entries, 0 AS accepted, 0 AS failed,"
	"               0 AS declined, 0 AS expired, 0 AS expired_unseen,"
	"               0 AS units_accepted, 0 AS units_failed FROM e"
	"        UNION ALL"
	"        SELECT o.resource_id, 0,"
	"               (o.state OPERATOR(pg_catalog.=) 'ACCEPTED')::pg_catalog.int4,"
	"               (o.state OPERATOR(pg_catalog.=) 'FAILED')::pg_catalog.int4,"
	"               (o.state OPERATOR(pg_catalog.=) 'DECLINED')::pg_catalog.int4,"
	"               (o.state OPERATOR(pg_catalog.=) 'EXPIRED')::pg_catalog.int4,"
	"               (o.state OPERATOR(pg_catalog.=) 'EXPIRED' AND o.seen_at IS NULL)::pg_catalog.int4,"
	"               CASE WHEN o.state OPERATOR(pg_catalog.=) 'ACCEPTED' THEN o.units ELSE 0 END,"
	"               CASE WHEN o.state OPERATOR(pg_catalog.=) 'FAILED' THEN o.units ELSE 0 END"
	"        FROM o) x"
	"  GROUP BY x.resource_id"
	"  ON CONFLICT (resource_id) DO UPDATE"
	"  SET entries = t.entries OPERATOR(pg_catalog.+) excluded.entries,"
	"      offers_accepted = t.offers_accepted OPERATOR(pg_catalog.+) excluded.offers_accepted,"
	"      offers_failed = t.offers_failed OPERATOR(pg_catalog.+) excluded.offers_failed,"
	"      offers_declined = t.offers_declined OPERATOR(pg_catalog.+) excluded.offers_declined,"
	"      offers_expired = t.offers_expired OPERATOR(pg_catalog.+) excluded.offers_expired,"
	"      offers_expired_unseen = t.offers_expired_unseen OPERATOR(pg_catalog.+) excluded.offers_expired_unseen,"
	"      units_accepted = t.units_accepted OPERATOR(pg_catalog.+) excluded.units_accepted,"
	"      units_failed = t.units_failed OPERATOR(pg_catalog.+) excluded.units_failed"
	") SELECT pg_catalog.count(*) FROM e",
	2, {TEXTARRAYOID, INT8ARRAYOID}, WAITLIST_CUSTOM_PLAN
};

/*
 * Processed capacity events: nothing changes them any more, and their
 * units are what resource_totals.units_released keeps.  A DEAD or PENDING
 * event stays.
 */
static WaitlistPlan move_events_plan = {
	"WITH ev AS ("
	"  SELECT x.resource_id, x.event_id FROM waitlist.capacity_event x"
	"  WHERE x.state OPERATOR(pg_catalog.=) 'PROCESSED'"
	"    AND x.processed_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)"
	"  ORDER BY x.processed_at LIMIT $2"
	"  FOR UPDATE SKIP LOCKED"
	"), d AS ("
	"  DELETE FROM waitlist.capacity_event x USING ev"
	"  WHERE x.resource_id OPERATOR(pg_catalog.=) ev.resource_id"
	"    AND x.event_id OPERATOR(pg_catalog.=) ev.event_id"
	"  RETURNING x.*"
	"), a AS ("
	"  INSERT INTO waitlist_archive.capacity_event SELECT d.*, pg_catalog.now() FROM d"
	"), totals AS ("
	"  INSERT INTO waitlist_archive.resource_totals AS t (resource_id, events, units_released)"
	"  SELECT d.resource_id, pg_catalog.count(*), pg_catalog.sum(d.quantity) FROM d"
	"  GROUP BY d.resource_id"
	"  ON CONFLICT (resource_id) DO UPDATE"
	"  SET events = t.events OPERATOR(pg_catalog.+) excluded.events,"
	"      units_released = t.units_released OPERATOR(pg_catalog.+) excluded.units_released"
	") SELECT pg_catalog.count(*) FROM d",
	2, {INTERVALOID, INT4OID}, WAITLIST_CUSTOM_PLAN
};

static int64
count_result(void)
{
	bool		isnull;
	Datum		n = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

	return isnull ? 0 : DatumGetInt64(n);
}

/*
 * Lock a batch of candidate entries and return it as two arrays (resource
 * ids, entry ids), without the entries whose outbox became undelivered
 * meanwhile; *count is the number left.
 */
static void
lock_batch(Datum *args, Datum *arrays, int *count)
{
	int			n;
	Datum	   *resources;
	Datum	   *entries;
	bool	   *keep;
	int			kept = 0;
	int			i;

	waitlist_execute(&candidates_plan, args, NULL, false, 0);
	n = (int) SPI_processed;
	resources = palloc(Max(n, 1) * sizeof(Datum));
	entries = palloc(Max(n, 1) * sizeof(Datum));
	keep = palloc(Max(n, 1) * sizeof(bool));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		resources[i] = PointerGetDatum(waitlist_spi_text(SPI_tuptable, i, 1));
		entries[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		keep[i] = true;
	}

	if (n > 0)
	{
		Datum		batch[2];
		uint64		row;

		batch[0] = PointerGetDatum(construct_array(resources, n, TEXTOID, -1, false, TYPALIGN_INT));
		batch[1] = PointerGetDatum(construct_array(entries, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		waitlist_execute(&lock_outbox_plan, batch, NULL, false, 0);
		/* a retry raced us (rare): drop those entries, by a linear search */
		for (row = 0; row < SPI_processed; row++)
		{
			bool		isnull;
			text	   *resource = waitlist_spi_text(SPI_tuptable, row, 1);
			int64		entry = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row],
															 SPI_tuptable->tupdesc, 2, &isnull));

			if (strcmp(text_to_cstring(waitlist_spi_text(SPI_tuptable, row, 3)), "PENDING") != 0)
				continue;
			for (i = 0; i < n; i++)
				if (keep[i] && DatumGetInt64(entries[i]) == entry &&
					VARSIZE_ANY_EXHDR(DatumGetTextPP(resources[i])) == VARSIZE_ANY_EXHDR(resource) &&
					memcmp(VARDATA_ANY(DatumGetTextPP(resources[i])), VARDATA_ANY(resource),
						   VARSIZE_ANY_EXHDR(resource)) == 0)
					keep[i] = false;
		}
	}

	for (i = 0; i < n; i++)
	{
		if (!keep[i])
			continue;
		resources[kept] = resources[i];
		entries[kept] = entries[i];
		kept++;
	}
	arrays[0] = PointerGetDatum(construct_array(resources, kept, TEXTOID, -1, false, TYPALIGN_INT));
	arrays[1] = PointerGetDatum(construct_array(entries, kept, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	*count = kept;
}

/*
 * One batch: up to entry_budget terminal entries (with what belongs to them)
 * and up to event_budget processed capacity events; counts what moved.
 */
static void
archive_batch(Interval *older_than, int32 entry_budget, int32 event_budget,
			  int64 *entries, int64 *events)
{
	Datum		args[2];
	Datum		arrays[2];
	int			count;

	args[0] = IntervalPGetDatum(older_than);
	if (entry_budget > 0)
	{
		args[1] = Int32GetDatum(entry_budget);
		lock_batch(args, arrays, &count);
		if (count > 0)
		{
			(void) waitlist_move_transitions(&move_transitions_plan, arrays, NULL);
			waitlist_execute(&move_entries_plan, arrays, NULL, false, 0);
			*entries += count_result();
		}
	}
	if (event_budget > 0)
	{
		args[1] = Int32GetDatum(event_budget);
		waitlist_execute(&move_events_plan, args, NULL, false, 0);
		*events += count_result();
	}
}

/*
 * waitlist_archive(older_than interval, batch integer) RETURNS bigint
 *
 * Moves up to batch terminal entries and up to batch processed capacity
 * events whose last change is older than older_than; returns how many
 * entries and events it moved (0: nothing is left to move).  On a Citus
 * cluster, each node moves as much of its own rows.
 */
Datum
waitlist_archive(PG_FUNCTION_ARGS)
{
	Interval   *older_than;
	int32		batch;
	int64		entries = 0;
	int64		events = 0;
	WaitlistApiCall call;
	List	   *answers;

	waitlist_check_not_null(fcinfo, 0, "older_than");
	waitlist_check_not_null(fcinfo, 1, "batch");
	older_than = PG_GETARG_INTERVAL_P(0);
	batch = PG_GETARG_INT32(1);

	waitlist_check_archive_age(older_than);
	if (batch < 1 || batch > WAITLIST_MAX_ARCHIVE_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch must be between 1 and %d", WAITLIST_MAX_ARCHIVE_BATCH)));

	/* on a cluster, each node moves up to a batch of its own rows */
	if (waitlist_fanned_out(fcinfo, &answers))
		PG_RETURN_INT64(waitlist_sum_of_answers(answers));

	waitlist_api_begin(&call);
	if (!waitlist_tables_distributed())
		archive_batch(older_than, batch, batch, &entries, &events);
	else
	{
		/* the node's batch, shard after shard, each moved where it lies */
		for (int i = 0; i < waitlist_shard_count() && (entries < batch || events < batch); i++)
		{
			int			outer_scope;

			if (!waitlist_shard_is_local(i))
				continue;
			outer_scope = waitlist_scope_to_shard(i);
			archive_batch(older_than, batch - (int32) entries, batch - (int32) events,
						  &entries, &events);
			(void) waitlist_scope_to_shard(outer_scope);
		}
	}
	waitlist_api_end(&call);

	PG_RETURN_INT64(entries + events);
}
