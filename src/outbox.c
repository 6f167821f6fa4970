/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Getting notifications out: the outbox consumer protocol (claim with a
 *	  lease and fencing token, ack, fail with backoff, dead letters), the
 *	  per-channel token buckets, the optional NOTIFY that wakes relays, and
 *	  the in-app inbox.
 *
 * Relays are at-least-once: a relay that dies loses its lease and the rows
 * come back; receivers dedupe on the outbox id, sent as Idempotency-Key.
 * Rows of one user on one channel are handed out one at a time in creation
 * order, so a fan never gets "expired" before "offered" by SMS, while a
 * slow email provider does not hold back their SMS.
 *
 * IDENTIFICATION
 *	  src/outbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "store.h"

PG_FUNCTION_INFO_V1(waitlist_outbox_claim);
PG_FUNCTION_INFO_V1(waitlist_outbox_ack);
PG_FUNCTION_INFO_V1(waitlist_outbox_fail);
PG_FUNCTION_INFO_V1(waitlist_outbox_retry);
PG_FUNCTION_INFO_V1(waitlist_set_channel_rate);
PG_FUNCTION_INFO_V1(waitlist_inbox);
PG_FUNCTION_INFO_V1(waitlist_offer_seen);

#define WAITLIST_MAX_CLAIM_ROWS		10000
#define WAITLIST_MAX_ERROR_CHARS	1000


/*
 * Rate limits: from one row per 11.6 days to a million per second, bursts of
 * up to a million rows.  Within these bounds (CHECK constraints from 1.1 on)
 * no refill arithmetic can overflow or underflow.
 */
#define WAITLIST_MIN_CHANNEL_RATE	0.000001
#define WAITLIST_MAX_CHANNEL_RATE	1000000.0
#define WAITLIST_MAX_CHANNEL_BURST	1000000

/* the longest lease a claim may take */
#define WAITLIST_MAX_LEASE			"1 day"

/*
 * Rows a claim may hand out: pending, not leased (or the lease ran out), not
 * backing off, of channel ch, and the oldest pending row of their user on
 * their channel.  The channel is a literal, so that the planner sees how
 * many rows it has: a range scan of outbox_pending_channel_idx (from 1.1 on)
 * that stops at its LIMIT, however many rows other channels have.
 */
#define DELIVERABLE_ROWS(ch) \
	"SELECT o.resource_id, o.outbox_id, o.channel FROM waitlist.outbox o" \
	" WHERE o.channel OPERATOR(pg_catalog.=) '" ch "'" \
	"   AND o.state OPERATOR(pg_catalog.=) 'PENDING'" \
	"   AND o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()" \
	"   AND (o.lease_expires_at IS NULL" \
	"        OR o.lease_expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp())" \
	"   AND NOT EXISTS (SELECT 1 FROM waitlist.outbox p" \
	"                   WHERE p.user_id OPERATOR(pg_catalog.=) o.user_id" \
	"                     AND p.channel OPERATOR(pg_catalog.=) o.channel" \
	"                     AND p.outbox_id OPERATOR(pg_catalog.<) o.outbox_id" \
	"                     AND p.state OPERATOR(pg_catalog.=) 'PENDING')" \
	" ORDER BY o.outbox_id"

/*
 * How many rows of channel ch a claim may hand out: none if the claim names
 * other channels, its whole tokens if it is rate-limited, else max_rows ($2).
 */
#define CHANNEL_QUOTA(ch) \
	"coalesce((SELECT CASE WHEN $4::pg_catalog.text[] IS NOT NULL" \
	"                       AND NOT '" ch "' OPERATOR(pg_catalog.=) ANY ($4) THEN 0" \
	"                      WHEN b.rate_per_second IS NULL THEN $2" \
	"                      ELSE LEAST(GREATEST(pg_catalog.floor(b.tokens), 0), $2)::integer END" \
	"          FROM waitlist.channel b WHERE b.channel OPERATOR(pg_catalog.=) '" ch "'), 0)"

/* the oldest rows of ch the claim may hand out (unlocked) */
#define CHANNEL_CANDIDATES(ch) \
	"SELECT * FROM (" DELIVERABLE_ROWS(ch) " LIMIT " CHANNEL_QUOTA(ch) ") AS " ch "_candidates"

/* as many of them as "taken" leaves to ch, locked, passing over rows another claim holds */
#define CHANNEL_CHOSEN(ch) \
	"SELECT * FROM (" DELIVERABLE_ROWS(ch) \
	"  LIMIT coalesce((SELECT t.n FROM taken t WHERE t.channel OPERATOR(pg_catalog.=) '" ch "'), 0)" \
	"  FOR UPDATE OF o SKIP LOCKED) AS " ch "_chosen"

/*
 * The channels, one branch each: those of the 1.0 contract, and the booking
 * service's (1.1; on 1.0 it has no waitlist.channel row, so no quota).
 */
#define FOR_EACH_CHANNEL(branch) \
	branch("email") " UNION ALL " branch("push") " UNION ALL " \
	branch("sms") " UNION ALL " branch("webhook") " UNION ALL " branch("booking")

/*
 * A channel's rate and burst as the refill uses them: clamped to the bounds,
 * for a 1.0 database whose rows were never checked against them.
 */
#define CHANNEL_RATE \
	"LEAST(GREATEST(b.rate_per_second, " CppAsString2(WAITLIST_MIN_CHANNEL_RATE) ")," \
	" " CppAsString2(WAITLIST_MAX_CHANNEL_RATE) ")"
#define CHANNEL_BURST \
	"LEAST(coalesce(b.burst, 1), " CppAsString2(WAITLIST_MAX_CHANNEL_BURST) ")::pg_catalog.float8"

/*
 * Refill the buckets of the rate-limited channels being claimed (those asked
 * for that have pending rows) for the time since their last refill, and lock
 * them: claims serialize only where a rate limit makes them share.  The time
 * counted is at most what fills the bucket, and refilled_at is taken as no
 * later than now, so that no stored value can make the arithmetic fail.
 */
#define REFILL_SQL \
	"UPDATE waitlist.channel b SET" \
	"  refilled_at = pg_catalog.clock_timestamp()," \
	"  tokens = LEAST(" CHANNEL_BURST ", GREATEST(b.tokens, 0) OPERATOR(pg_catalog.+) (" CHANNEL_RATE \
	"    OPERATOR(pg_catalog.*) pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()" \
	"      OPERATOR(pg_catalog.-) GREATEST(LEAST(b.refilled_at, pg_catalog.clock_timestamp())," \
	"               pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) (interval '1 second'" \
	"                 OPERATOR(pg_catalog.*) (" CHANNEL_BURST " OPERATOR(pg_catalog./) " CHANNEL_RATE "))))))" \
	" WHERE b.rate_per_second IS NOT NULL" \
	"   AND ($1::pg_catalog.text[] IS NULL OR b.channel OPERATOR(pg_catalog.=) ANY ($1))"

static WaitlistPlan refill_plan = {
	REFILL_SQL
	"   AND EXISTS (SELECT 1 FROM waitlist.outbox o"
	"               WHERE o.channel OPERATOR(pg_catalog.=) b.channel"
	"                 AND o.state OPERATOR(pg_catalog.=) 'PENDING')",
	1, {TEXTARRAYOID}
};

/*
 * The start of a claim: "taken" merges the channels' candidates (the
 * branches of "candidates") oldest first up to max_rows ($2) and counts what
 * that leaves to each channel; "chosen" locks that many of each channel's
 * deliverable rows.
 */
#define TAKEN_AND_CHOSEN_SQL(candidates) \
	"WITH taken AS MATERIALIZED (" \
	"  SELECT c.channel, pg_catalog.count(*)::integer AS n FROM (" \
	candidates \
	"    ORDER BY outbox_id LIMIT $2) c" \
	"  GROUP BY c.channel" \
	"), chosen AS (" \
	FOR_EACH_CHANNEL(CHANNEL_CHOSEN) \
	")"

/*
 * The end of a claim: lease the rows of "chosen" to consumer $1 for $3, and
 * return them.
 */
#define LEASE_CHOSEN_SQL \
	"UPDATE waitlist.outbox o" \
	"  SET lease_owner = $1," \
	"      lease_token = (SELECT pg_catalog.nextval('waitlist.lease_token_seq'))," \
	"      lease_expires_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) $3" \
	"  FROM chosen c WHERE o.resource_id OPERATOR(pg_catalog.=) c.resource_id" \
	"    AND o.outbox_id OPERATOR(pg_catalog.=) c.outbox_id" \
	/* ids as an array: an index lookup whatever the row estimates say */ \
	"    AND o.outbox_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c2.outbox_id FROM chosen c2))" \
	"  RETURNING o.outbox_id, o.resource_id, o.user_id, o.channel, o.event_type, o.payload," \
	"            o.created_at, o.attempts, o.lease_token"

/*
 * Lease the oldest deliverable rows, within each rate-limited channel no
 * more than its whole tokens.  Each channel is scanned on its own, so rows a
 * channel may not hand out now never take the place of another channel's:
 * "taken" merges the channels' candidates oldest first up to max_rows and
 * counts what that leaves to each channel; "chosen" locks that many of each
 * channel's deliverable rows, passing over rows another claim holds, so that
 * only leased rows are locked.  A channel the claim does not name, or whose
 * bucket is empty, is not scanned at all (LIMIT 0).
 */
static WaitlistPlan claim_plan = {
	TAKEN_AND_CHOSEN_SQL(FOR_EACH_CHANNEL(CHANNEL_CANDIDATES))
	", spent AS ("
	"  UPDATE waitlist.channel b SET tokens = b.tokens OPERATOR(pg_catalog.-) x.n"
	"  FROM (SELECT channel, pg_catalog.count(*) AS n FROM chosen GROUP BY channel) x"
	"  WHERE b.channel OPERATOR(pg_catalog.=) x.channel AND b.rate_per_second IS NOT NULL"
	") " LEASE_CHOSEN_SQL,
	4, {TEXTOID, INT4OID, INTERVALOID, TEXTARRAYOID}, WAITLIST_CUSTOM_PLAN
};

/*
 * On Citus, a claim goes to each node that holds shards (waitlist.claim_here(),
 * a distributed function called with a key of that node), and on each node
 * to each of its shards in turn: a node's claim is claim_plan on one shard,
 * with the quotas the coordinator's buckets allow ($4: email, push, sms,
 * webhook, booking) and no bucket of its own.  The order per user and
 * channel then holds within a shard, not across them.
 */
#define FOR_EACH_NUMBERED_CHANNEL(branch) \
	branch("email", "1") " UNION ALL " branch("push", "2") " UNION ALL " \
	branch("sms", "3") " UNION ALL " branch("webhook", "4") " UNION ALL " branch("booking", "5")
#define SHARD_CHANNEL_CANDIDATES(ch, k) \
	"SELECT * FROM (" DELIVERABLE_ROWS(ch) " LIMIT LEAST($4[" k "], $2)) AS " ch "_candidates"

static WaitlistPlan shard_claim_plan = {
	TAKEN_AND_CHOSEN_SQL(FOR_EACH_NUMBERED_CHANNEL(SHARD_CHANNEL_CANDIDATES))
	" " LEASE_CHOSEN_SQL,
	4, {TEXTOID, INT4OID, INTERVALOID, INT4ARRAYOID}, WAITLIST_CUSTOM_PLAN
};

/* the coordinator's buckets, refilled, whether or not the cluster has rows for them */
static WaitlistPlan cluster_refill_plan = {
	REFILL_SQL,
	1, {TEXTARRAYOID}
};

/* the quota of each channel, in FOR_EACH_NUMBERED_CHANNEL's order */
static WaitlistPlan cluster_quotas_plan = {
	"SELECT ARRAY[" CHANNEL_QUOTA("email") ", " CHANNEL_QUOTA("push") ", " CHANNEL_QUOTA("sms") ","
	" " CHANNEL_QUOTA("webhook") ", " CHANNEL_QUOTA("booking") "]",
	4, {TEXTOID, INT4OID, INTERVALOID, TEXTARRAYOID}
};

static WaitlistPlan cluster_spend_plan = {
	"UPDATE waitlist.channel b SET tokens = b.tokens OPERATOR(pg_catalog.-) $2"
	" WHERE b.channel OPERATOR(pg_catalog.=) $1 AND b.rate_per_second IS NOT NULL",
	2, {TEXTOID, INT4OID}
};

static WaitlistPlan node_claim_plan = {
	"SELECT * FROM waitlist.claim_here($1, $2, $3, $4, $5)",
	5, {TEXTOID, TEXTOID, INT4OID, INTERVALOID, INT4ARRAYOID}
};

#define NUMBERED_CHANNELS 5
static const char *const numbered_channels[NUMBERED_CHANNELS] = {"email", "push", "sms", "webhook", "booking"};

/* Take the claimed rows out of the quotas they were claimed under. */
static int
spend_quotas(int32 *quotas, int *spent)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *channel = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4);

		for (int k = 0; k < NUMBERED_CHANNELS; k++)
			if (strcmp(channel, numbered_channels[k]) == 0)
			{
				quotas[k]--;
				if (spent != NULL)
					spent[k]++;
			}
	}
	return (int) SPI_processed;
}

static Datum
quotas_array(int32 *quotas)
{
	Datum		elems[NUMBERED_CHANNELS];

	for (int k = 0; k < NUMBERED_CHANNELS; k++)
		elems[k] = Int32GetDatum(Max(quotas[k], 0));
	return PointerGetDatum(construct_array(elems, NUMBERED_CHANNELS, INT4OID,
										   sizeof(int32), true, TYPALIGN_INT));
}

static void
quotas_from_array(Datum array, int32 *quotas)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(array), INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int k = 0; k < NUMBERED_CHANNELS; k++)
		quotas[k] = k < n && !nulls[k] ? DatumGetInt32(elems[k]) : 0;
}

/*
 * The claim on a cluster: the coordinator's buckets give the quotas, each
 * node claims within what is left, and the buckets pay for what the nodes
 * claimed.  values are the claim's: consumer, max_rows, lease, channels.
 */
static void
claim_on_cluster(FunctionCallInfo fcinfo, Datum *values, char *nulls)
{
	int32		quotas[NUMBERED_CHANNELS];
	int			spent[NUMBERED_CHANNELS] = {0};
	int			remaining = DatumGetInt32(values[1]);
	char	  **keys;
	int			nkeys;
	bool		isnull;

	waitlist_execute(&cluster_refill_plan, &values[3], &nulls[3], false, 0);
	waitlist_execute(&cluster_quotas_plan, values, nulls, true, 0);
	quotas_from_array(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
					  quotas);
	nkeys = waitlist_node_route_keys(&keys);
	for (int n = 0; n < nkeys && remaining > 0; n++)
	{
		Datum		args[5] = {CStringGetTextDatum(keys[n]), values[0], Int32GetDatum(remaining),
		values[2], quotas_array(quotas)};

		waitlist_execute(&node_claim_plan, args, NULL, false, 0);
		waitlist_spi_rows_to_tuplestore(fcinfo);
		remaining -= spend_quotas(quotas, spent);
	}
	for (int k = 0; k < NUMBERED_CHANNELS; k++)
	{
		Datum		args[2] = {CStringGetTextDatum(numbered_channels[k]), Int32GetDatum(spent[k])};

		if (spent[k] > 0)
			waitlist_execute(&cluster_spend_plan, args, NULL, false, 0);
	}
}

PG_FUNCTION_INFO_V1(waitlist_claim_here);

/*
 * waitlist.claim_here(route_key, consumer, max_rows, lease, quotas): the
 * claim of one node, over its shards (see claim_on_cluster()).
 */
Datum
waitlist_claim_here(PG_FUNCTION_ARGS)
{
	int32		quotas[NUMBERED_CHANNELS];
	int			remaining = PG_GETARG_INT32(2);
	WaitlistApiCall call;

	InitMaterializedSRF(fcinfo, 0);
	quotas_from_array(PG_GETARG_DATUM(4), quotas);
	waitlist_api_begin(&call);
	for (int i = 0; i < waitlist_shard_count() && remaining > 0; i++)
	{
		Datum		args[4] = {PG_GETARG_DATUM(1), Int32GetDatum(remaining), PG_GETARG_DATUM(3),
		quotas_array(quotas)};

		if (!waitlist_shard_is_local(i))
			continue;
		waitlist_execute_on_shard(&shard_claim_plan, i, args, NULL);
		waitlist_spi_rows_to_tuplestore(fcinfo);
		remaining -= spend_quotas(quotas, NULL);
	}
	waitlist_api_end(&call);
	return (Datum) 0;
}

static WaitlistPlan lock_row_plan = {
	"SELECT state, lease_token, attempts FROM waitlist.outbox"
	" WHERE resource_id OPERATOR(pg_catalog.=) $2 AND outbox_id OPERATOR(pg_catalog.=) $1"
	" FOR UPDATE",
	2, {INT8OID, TEXTOID}
};

static WaitlistPlan ack_plan = {
	"UPDATE waitlist.outbox SET state = 'DELIVERED', delivered_at = pg_catalog.now(),"
	"  lease_expires_at = NULL, last_error = NULL"
	" WHERE resource_id OPERATOR(pg_catalog.=) $2 AND outbox_id OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, TEXTOID}
};

/*
 * The retry policy (WAITLIST_BACKOFF_SQL), at most an hour apart.  The lease
 * ends, so a repeated report with the same token is refused.
 */
static WaitlistPlan fail_plan = {
	"UPDATE waitlist.outbox SET"
	"  attempts = attempts OPERATOR(pg_catalog.+) 1,"
	"  last_error = $2,"
	"  lease_token = NULL, lease_expires_at = NULL,"
	"  state = CASE WHEN (attempts OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>=) $3"
	"               THEN 'DEAD' ELSE 'PENDING' END,"
	"  next_attempt_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) "
	WAITLIST_BACKOFF_SQL("$4", "1 hour", "0.5", "outbox_id::pg_catalog.text")
	" WHERE resource_id OPERATOR(pg_catalog.=) $5 AND outbox_id OPERATOR(pg_catalog.=) $1"
	" RETURNING state OPERATOR(pg_catalog.=) 'DEAD'",
	5, {INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID}
};

static WaitlistPlan retry_plan = {
	"UPDATE waitlist.outbox SET state = 'PENDING', attempts = 0, last_error = NULL,"
	"  next_attempt_at = pg_catalog.now(), lease_owner = NULL, lease_token = NULL,"
	"  lease_expires_at = NULL"
	" WHERE resource_id OPERATOR(pg_catalog.=) $2 AND outbox_id OPERATOR(pg_catalog.=) $1"
	"   AND state OPERATOR(pg_catalog.=) 'DEAD'",
	2, {INT8OID, TEXTOID}
};

static WaitlistPlan set_rate_plan = {
	"UPDATE waitlist.channel SET rate_per_second = $2, burst = $3,"
	"  tokens = coalesce($3, 0), refilled_at = pg_catalog.clock_timestamp()"
	" WHERE channel OPERATOR(pg_catalog.=) $1",
	3, {TEXTOID, FLOAT8OID, INT4OID}
};

/*
 * Open offers first (soonest deadline first), then the events of the last
 * $2, newest first, each once whatever the number of channels it went to.
 */
static WaitlistPlan inbox_plan = {
	"SELECT resource_id, entry_id, offer_id, kind, state, expires_at, seen_at, at, payload FROM ("
	"  SELECT DISTINCT 0 AS part, o.resource_id, o.entry_id, o.offer_id,"
	"         'open_offer'::pg_catalog.text AS kind,"
	"         o.state, o.expires_at, o.seen_at, o.created_at AS at, NULL::pg_catalog.jsonb AS payload,"
	"         0::bigint AS outbox_id"
	"  FROM waitlist.outbox b"
	"  JOIN waitlist.offer o ON o.resource_id OPERATOR(pg_catalog.=) b.resource_id"
	"                        AND o.offer_id OPERATOR(pg_catalog.=) b.offer_id"
	"  WHERE b.user_id OPERATOR(pg_catalog.=) $1"
	"    AND b.event_type OPERATOR(pg_catalog.=) 'offer_created'"
	"    AND o.state OPERATOR(pg_catalog.=) 'OPEN'"
	"  UNION ALL"
	"  SELECT * FROM ("
	"    SELECT DISTINCT ON (b.resource_id, b.offer_id, b.event_type)"
	"           1, b.resource_id, b.entry_id, b.offer_id, b.event_type, o.state, o.expires_at,"
	"           o.seen_at, b.created_at, b.payload, b.outbox_id"
	"    FROM waitlist.outbox b"
	"    LEFT JOIN waitlist.offer o ON o.resource_id OPERATOR(pg_catalog.=) b.resource_id"
	"                              AND o.offer_id OPERATOR(pg_catalog.=) b.offer_id"
	/* a window longer than any history is all of it: no now() - $2 overflow */
	"    WHERE b.user_id OPERATOR(pg_catalog.=) $1"
	/* what the booking service is told is not the fan's to read */
	"      AND b.channel OPERATOR(pg_catalog.<>) 'booking'"
	"      AND b.created_at OPERATOR(pg_catalog.>=) (pg_catalog.now()"
	"          OPERATOR(pg_catalog.-) LEAST(GREATEST($2, interval '0'), interval '100 years'))"
	"    ORDER BY b.resource_id, b.offer_id, b.event_type, b.outbox_id"
	"  ) events"
	") inbox "
	"ORDER BY part, CASE WHEN part OPERATOR(pg_catalog.=) 0 THEN expires_at END,"
	" at DESC, outbox_id DESC, offer_id",
	2, {TEXTOID, INTERVALOID}, 0, true
};

/* A row of an inbox gathered from the nodes of a cluster, and its order. */
typedef struct InboxRow
{
	HeapTuple	tuple;
	bool		open_offer;
	bool		expires_null;
	bool		at_null;
	TimestampTz expires_at;
	TimestampTz at;
	int64		offer_id;
	int			answered;		/* its place among the answers, node by node */
} InboxRow;

#define INBOX_KIND_COLUMN		4
#define INBOX_EXPIRES_COLUMN	6
#define INBOX_AT_COLUMN			8
#define INBOX_OFFER_COLUMN		3

/*
 * inbox_plan's ORDER BY, but for outbox_id, which no node answers with: rows
 * alike in all else keep the order their node gave them.
 */
static int
inbox_row_order(const void *a, const void *b)
{
	const InboxRow *x = a;
	const InboxRow *y = b;

	if (x->open_offer != y->open_offer)
		return x->open_offer ? -1 : 1;
	if (x->open_offer && x->expires_null != y->expires_null)
		return x->expires_null ? 1 : -1;
	if (x->open_offer && !x->expires_null && x->expires_at != y->expires_at)
		return x->expires_at < y->expires_at ? -1 : 1;
	if (x->at_null != y->at_null)
		return x->at_null ? -1 : 1;
	if (!x->at_null && x->at != y->at)
		return x->at > y->at ? -1 : 1;
	if (x->offer_id != y->offer_id)
		return x->offer_id < y->offer_id ? -1 : 1;
	return x->answered < y->answered ? -1 : x->answered > y->answered ? 1 : 0;
}

/* The inboxes the nodes of a cluster answered, as one, in inbox_plan's order. */
static void
inbox_from_answers(FunctionCallInfo fcinfo, List *answers)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	desc = rsinfo->setDesc;
	AttInMetadata *meta = TupleDescGetAttInMetadata(desc);
	InboxRow   *rows = palloc0(sizeof(InboxRow) * Max(list_length(answers), 1));
	int			nrows = 0;
	ListCell   *lc;

	foreach(lc, answers)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		char	  **cells = palloc0(sizeof(char *) * desc->natts);
		InboxRow   *row = &rows[nrows];
		bool		isnull;
		Datum		value;

		row->answered = nrows++;
		deconstruct_array((ArrayType *) lfirst(lc), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int c = 0; c < desc->natts && c < n; c++)
			cells[c] = nulls[c] ? NULL : TextDatumGetCString(elems[c]);
		row->tuple = BuildTupleFromCStrings(meta, cells);
		value = heap_getattr(row->tuple, INBOX_KIND_COLUMN, desc, &isnull);
		row->open_offer = !isnull && strcmp(TextDatumGetCString(value), "open_offer") == 0;
		value = heap_getattr(row->tuple, INBOX_EXPIRES_COLUMN, desc, &row->expires_null);
		row->expires_at = row->expires_null ? 0 : DatumGetTimestampTz(value);
		value = heap_getattr(row->tuple, INBOX_AT_COLUMN, desc, &row->at_null);
		row->at = row->at_null ? 0 : DatumGetTimestampTz(value);
		value = heap_getattr(row->tuple, INBOX_OFFER_COLUMN, desc, &isnull);
		row->offer_id = isnull ? PG_INT64_MAX : DatumGetInt64(value);
	}
	qsort(rows, nrows, sizeof(InboxRow), inbox_row_order);
	for (int i = 0; i < nrows; i++)
		tuplestore_puttuple(rsinfo->setResult, rows[i].tuple);
}

/* the offer's resource first: on Citus the update then runs on its shard */
static WaitlistPlan offer_seen_resource_plan = {
	"SELECT resource_id FROM waitlist.offer WHERE offer_id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}, 0, true
};

static WaitlistPlan offer_seen_plan = {
	"UPDATE waitlist.offer SET seen_at = pg_catalog.now()"
	" WHERE resource_id OPERATOR(pg_catalog.=) $2 AND offer_id OPERATOR(pg_catalog.=) $1"
	"   AND seen_at IS NULL",
	2, {INT8OID, TEXTOID}
};

static void
outbox_row_not_found(int64 outbox_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("outbox row " INT64_FORMAT " does not exist", outbox_id)));
}

/*
 * The resource of an outbox row; errors if there is no such row.  Looked up
 * first, so that the statements on the row name it, and on Citus run on its
 * shard.
 */
static text *
outbox_resource(int64 outbox_id)
{
	text	   *resource_id = waitlist_outbox_row_resource(outbox_id);

	if (resource_id == NULL)
		outbox_row_not_found(outbox_id);
	return resource_id;
}

/*
 * Lock an outbox row of the resource that a consumer holds a lease on;
 * refuses a stale token.  Returns the row's state.
 */
static char *
lock_leased_row(int64 outbox_id, text *resource_id, int64 lease_token)
{
	Datum		values[2] = {Int64GetDatum(outbox_id), PointerGetDatum(resource_id)};
	char	   *state;
	bool		isnull;
	Datum		token;

	waitlist_execute(&lock_row_plan, values, NULL, false, 0);
	if (SPI_processed == 0)
		outbox_row_not_found(outbox_id);
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	token = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (isnull || DatumGetInt64(token) != lease_token || strcmp(state, "DEAD") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_STALE_LEASE),
				 errmsg("lease token " INT64_FORMAT " of outbox row " INT64_FORMAT " is stale",
						lease_token, outbox_id),
				 errdetail("The row was claimed again by another consumer, retried or dead-lettered since."),
				 errhint("Drop the row and claim again.")));
	return state;
}

static int64
outbox_id_arg(FunctionCallInfo fcinfo)
{
	waitlist_check_not_null(fcinfo, 0, "outbox_id");
	return PG_GETARG_INT64(0);
}

/*
 * waitlist_outbox_claim(consumer text, max_rows integer, lease interval,
 * channels text[]) RETURNS SETOF record
 *
 * channels NULL: rows of every channel; else only those channels', for a
 * relay that serves some providers only.
 */
Datum
waitlist_outbox_claim(PG_FUNCTION_ARGS)
{
	text	   *consumer = waitlist_id_arg(fcinfo, 0, "consumer");
	int32		max_rows;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	WaitlistApiCall call;

	waitlist_check_not_null(fcinfo, 1, "max_rows");
	waitlist_check_not_null(fcinfo, 2, "lease");
	max_rows = PG_GETARG_INT32(1);
	if (max_rows <= 0 || max_rows > WAITLIST_MAX_CLAIM_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be between 1 and %d", WAITLIST_MAX_CLAIM_ROWS)));
	waitlist_check_interval(PG_GETARG_DATUM(2), "lease", WAITLIST_MAX_LEASE, NULL,
							"A relay that dies holds its rows until its lease runs out; the longest lease allowed is " WAITLIST_MAX_LEASE ".");

	InitMaterializedSRF(fcinfo, 0);

	values[0] = PointerGetDatum(consumer);
	values[1] = Int32GetDatum(max_rows);
	values[2] = PG_GETARG_DATUM(2);
	if (!PG_ARGISNULL(3))
		waitlist_check_channels(PG_GETARG_DATUM(3), true);
	values[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[3] = PG_ARGISNULL(3) ? 'n' : ' ';

	waitlist_api_begin(&call);
	if (waitlist_tables_distributed())
		claim_on_cluster(fcinfo, values, nulls);
	else
	{
		waitlist_execute(&refill_plan, &values[3], &nulls[3], false, 0);
		waitlist_execute(&claim_plan, values, nulls, false, 0);
		waitlist_spi_rows_to_tuplestore(fcinfo);
	}
	waitlist_api_end(&call);

	return (Datum) 0;
}

/*
 * waitlist_outbox_ack(outbox_id bigint, lease_token bigint) RETURNS boolean
 *
 * Delivered.  Repeating the ack with the same token is harmless.
 */
Datum
waitlist_outbox_ack(PG_FUNCTION_ARGS)
{
	int64		outbox_id = outbox_id_arg(fcinfo);
	Datum		values[2] = {Int64GetDatum(outbox_id)};
	WaitlistApiCall call;
	char	   *state;

	WAITLIST_FORWARD(WAITLIST_ROUTE_OUTBOX, 0);

	waitlist_check_not_null(fcinfo, 1, "lease_token");

	waitlist_api_begin(&call);
	values[1] = PointerGetDatum(outbox_resource(outbox_id));
	state = lock_leased_row(outbox_id, DatumGetTextPP(values[1]), PG_GETARG_INT64(1));
	if (strcmp(state, "PENDING") == 0)
		waitlist_execute(&ack_plan, values, NULL, false, 0);
	waitlist_api_end(&call);

	PG_RETURN_BOOL(true);
}

/*
 * waitlist_outbox_fail(outbox_id bigint, lease_token bigint, error text)
 * RETURNS boolean
 *
 * A failed delivery: the row comes back after an exponential backoff with
 * jitter, or is dead-lettered once it has failed waitlist.outbox_max_attempts
 * times.  Returns true if it was dead-lettered.
 */
Datum
waitlist_outbox_fail(PG_FUNCTION_ARGS)
{
	int64		outbox_id = outbox_id_arg(fcinfo);
	text	   *error;
	Datum		values[5];
	WaitlistApiCall call;
	char	   *state;
	bool		dead = false;
	bool		isnull;

	WAITLIST_FORWARD(WAITLIST_ROUTE_OUTBOX, 0);

	waitlist_check_not_null(fcinfo, 1, "lease_token");
	waitlist_check_not_null(fcinfo, 2, "error");
	/* keep the first WAITLIST_MAX_ERROR_CHARS characters of a long error */
	error = DatumGetTextPP(DirectFunctionCall3(text_substr,
											   PG_GETARG_DATUM(2),
											   Int32GetDatum(1),
											   Int32GetDatum(WAITLIST_MAX_ERROR_CHARS)));

	values[0] = Int64GetDatum(outbox_id);
	values[1] = PointerGetDatum(error);
	values[2] = Int32GetDatum(waitlist_outbox_max_attempts);
	values[3] = Int32GetDatum(waitlist_outbox_retry_base_ms);

	waitlist_api_begin(&call);
	values[4] = PointerGetDatum(outbox_resource(outbox_id));
	state = lock_leased_row(outbox_id, DatumGetTextPP(values[4]), PG_GETARG_INT64(1));
	if (strcmp(state, "DELIVERED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WAITLIST_STALE_LEASE),
				 errmsg("outbox row " INT64_FORMAT " was already delivered", outbox_id)));
	waitlist_execute(&fail_plan, values, NULL, false, 0);
	dead = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	waitlist_api_end(&call);

	PG_RETURN_BOOL(dead);
}

/* waitlist_outbox_retry(outbox_id bigint) RETURNS boolean */
Datum
waitlist_outbox_retry(PG_FUNCTION_ARGS)
{
	int64		outbox_id = outbox_id_arg(fcinfo);
	Datum		values[2] = {Int64GetDatum(outbox_id)};
	WaitlistApiCall call;
	bool		revived;

	WAITLIST_FORWARD(WAITLIST_ROUTE_OUTBOX, 0);

	waitlist_api_begin(&call);
	values[1] = PointerGetDatum(outbox_resource(outbox_id));
	waitlist_execute(&retry_plan, values, NULL, false, 0);
	revived = SPI_processed > 0;
	waitlist_api_end(&call);

	PG_RETURN_BOOL(revived);
}

/*
 * waitlist_set_channel_rate(channel text, rate_per_second double precision,
 * burst integer) RETURNS void
 */
Datum
waitlist_set_channel_rate(PG_FUNCTION_ARGS)
{
	text	   *channel = waitlist_id_arg(fcinfo, 0, "channel");
	Datum		values[3];
	char		nulls[3] = {' ', 'n', 'n'};
	WaitlistApiCall call;

	values[0] = PointerGetDatum(channel);
	values[1] = (Datum) 0;
	values[2] = (Datum) 0;
	if (PG_ARGISNULL(1) && !PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("burst needs a rate_per_second"),
				 errdetail("A channel without a rate limit has no bucket.")));
	if (!PG_ARGISNULL(1))
	{
		float8		rate = PG_GETARG_FLOAT8(1);
		int32		burst;

		if (!(rate > 0) || isinf(rate))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("rate_per_second must be positive"),
					 errhint("Pass NULL for a channel without a rate limit.")));
		if (rate < WAITLIST_MIN_CHANNEL_RATE || rate > WAITLIST_MAX_CHANNEL_RATE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("rate_per_second %g is out of range", rate),
					 errdetail("A channel's rate must be between %g and %g rows per second.",
							   WAITLIST_MIN_CHANNEL_RATE, WAITLIST_MAX_CHANNEL_RATE),
					 errhint("Pass NULL for a channel without a rate limit.")));
		if (PG_ARGISNULL(2))
			burst = rate >= 1 ? (int32) ceil(rate) : 1;
		else if ((burst = PG_GETARG_INT32(2)) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("burst must be positive")));
		else if (burst > WAITLIST_MAX_CHANNEL_BURST)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("burst must not exceed %d", WAITLIST_MAX_CHANNEL_BURST),
					 errdetail("A channel's bucket holds at most %d rows.",
							   WAITLIST_MAX_CHANNEL_BURST)));
		values[1] = Float8GetDatum(rate);
		values[2] = Int32GetDatum(burst);
		nulls[1] = nulls[2] = ' ';
	}

	waitlist_api_begin(&call);
	waitlist_execute(&set_rate_plan, values, nulls, false, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown notification channel \"%s\"", text_to_cstring(channel)),
				 errhint("Channels are email, sms, push, webhook and booking.")));
	waitlist_api_end(&call);

	PG_RETURN_VOID();
}

/* waitlist_inbox(user_id text, since interval) RETURNS SETOF record */
Datum
waitlist_inbox(PG_FUNCTION_ARGS)
{
	text	   *user_id = waitlist_id_arg(fcinfo, 0, "user_id");
	Datum		values[2];
	WaitlistApiCall call;
	List	   *answers;

	waitlist_check_not_null(fcinfo, 1, "since");
	values[0] = PointerGetDatum(user_id);
	values[1] = PG_GETARG_DATUM(1);

	InitMaterializedSRF(fcinfo, 0);
	/* on a cluster, each node answers with the user's rows it holds */
	if (waitlist_fanned_out(fcinfo, &answers))
	{
		inbox_from_answers(fcinfo, answers);
		return (Datum) 0;
	}
	waitlist_api_begin(&call);
	waitlist_execute(&inbox_plan, values, NULL, false, 0);
	waitlist_spi_rows_to_tuplestore(fcinfo);
	waitlist_api_end(&call);

	return (Datum) 0;
}

/* waitlist_offer_seen(offer_id bigint) RETURNS boolean */
Datum
waitlist_offer_seen(PG_FUNCTION_ARGS)
{
	int64		offer_id;
	Datum		values[2];
	WaitlistApiCall call;
	bool		first;

	WAITLIST_FORWARD(WAITLIST_ROUTE_OFFER, 0);

	waitlist_check_not_null(fcinfo, 0, "offer_id");
	offer_id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(offer_id);

	waitlist_api_begin(&call);
	waitlist_execute(&offer_seen_resource_plan, values, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("waitlist offer " INT64_FORMAT " does not exist", offer_id)));
	values[1] = PointerGetDatum(waitlist_spi_text(SPI_tuptable, 0, 1));
	waitlist_execute(&offer_seen_plan, values, NULL, false, 0);
	first = SPI_processed > 0;
	waitlist_api_end(&call);

	PG_RETURN_BOOL(first);
}
