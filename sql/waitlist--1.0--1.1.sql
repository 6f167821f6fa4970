/* waitlist--1.0--1.1.sql: upgrade the waitlist extension from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION waitlist UPDATE TO '1.1'" to load this file. \quit

/*
 * There is no full waitlist--1.1.sql: CREATE EXTENSION runs the frozen 1.0
 * script and then this one, so a fresh 1.1 and an updated 1.0 are built by
 * the same statements (as contrib/pg_stat_statements does).  Everything
 * here must therefore also work on a populated 1.0 database.
 */

/* ---- security: the owner frame, re-entry, the audit trail ---- */


/* ---- backups: tables and sequences that pg_dump must keep ---- */


/* ---- settings: bounds checked when a value is set ---- */

/*
 * The API refuses settings out of these bounds; the constraints hold them
 * for rows written any other way.  A 1.0 database may hold values that 1.0
 * accepted (a wave_interval of a million years, a rate of 1e308) or that
 * were written by hand: they are first clamped to the nearest bound, so
 * that the update never fails and every constraint is validated.  Clamping
 * keeps what such a value meant (a cap nobody reaches, a rate nobody can
 * reach, a wave or window longer than anything waits).
 */
UPDATE waitlist.resource SET offer_ttl = interval '1 year'
 WHERE offer_ttl > interval '1 year';
UPDATE waitlist.resource SET wave_interval = interval '1 year'
 WHERE wave_interval > interval '1 year';
UPDATE waitlist.resource SET max_waiting = 1000000000
 WHERE max_waiting > 1000000000;
UPDATE waitlist.resource SET wave_size = 1000000
 WHERE wave_size > 1000000;
-- a wave that started later than now was written by hand: it starts now
UPDATE waitlist.resource SET wave_started_at = pg_catalog.now()
 WHERE wave_started_at > pg_catalog.now();
/*
 * resource_wave_timestamps_valid: the end of a wave is a timestamp.  A row whose wave
 * would end past the last one cannot be written (the check itself fails with
 * 22008), so waitlist_check() can compute every wave's end.
 */
ALTER TABLE waitlist.resource
    ADD CONSTRAINT resource_wave_timestamps_valid CHECK (wave_started_at + wave_interval >= wave_started_at),
    ADD CONSTRAINT resource_offer_ttl_bounded CHECK (offer_ttl <= interval '1 year'),
    ADD CONSTRAINT resource_wave_interval_bounded CHECK (wave_interval <= interval '1 year'),
    ADD CONSTRAINT resource_max_waiting_bounded CHECK (max_waiting <= 1000000000),
    ADD CONSTRAINT resource_wave_size_bounded CHECK (wave_size <= 1000000);

UPDATE waitlist.channel
   SET rate_per_second = LEAST(GREATEST(rate_per_second, 0.000001), 1000000)
 WHERE rate_per_second < 0.000001 OR rate_per_second > 1000000;
-- a bucket needs a size (one second's worth by default), an unlimited channel none
UPDATE waitlist.channel
   SET burst = CASE WHEN rate_per_second IS NOT NULL
                    THEN LEAST(coalesce(burst, pg_catalog.ceil(rate_per_second)::integer), 1000000) END
 WHERE (rate_per_second IS NULL) <> (burst IS NULL) OR burst > 1000000;
UPDATE waitlist.channel SET tokens = LEAST(GREATEST(tokens, 0), coalesce(burst, 0))
 WHERE NOT (tokens BETWEEN 0 AND coalesce(burst, 0));
ALTER TABLE waitlist.channel
    ADD CONSTRAINT channel_rate_bounded CHECK (rate_per_second BETWEEN 0.000001 AND 1000000),
    ADD CONSTRAINT channel_burst_bounded CHECK (burst <= 1000000),
    ADD CONSTRAINT channel_burst_with_rate CHECK ((rate_per_second IS NULL) = (burst IS NULL));


/* ---- outbox: claims fair across channels ---- */

-- each channel's pending rows in claim order: a claim scans every channel on its own
CREATE INDEX outbox_pending_channel_idx ON waitlist.outbox (channel, outbox_id) INCLUDE (resource_id)
    WHERE state = 'PENDING';


/* ---- capacity trigger ---- */


/* ---- pg_cron scheduling ---- */


/* ---- promotion workers and capacity events ---- */


/* ---- gate protocol and isolation levels ---- */

