/* waitlist--1.0--1.1.sql: upgrade the waitlist extension from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION waitlist UPDATE TO '1.1'" to load this file. \quit

/*
 * There is no full waitlist--1.1.sql: CREATE EXTENSION runs the frozen 1.0
 * script and then this one, so a fresh 1.1 and an updated 1.0 are built by
 * the same statements (as contrib/pg_stat_statements does).  Everything
 * here must therefore also work on a populated 1.0 database.
 */

/* ---- security: the owner frame, re-entry, the audit trail ---- */

/*
 * The audit trail's triggers fire whatever session_replication_role says;
 * record_transitions() itself skips a superuser's replica-mode changes made
 * outside the API (restores, replication apply), whose rows bring their
 * trail with them.
 */
ALTER TABLE waitlist.transition ENABLE ALWAYS TRIGGER transition_no_update_delete;
ALTER TABLE waitlist.transition ENABLE ALWAYS TRIGGER transition_no_truncate;
ALTER TABLE waitlist.entry ENABLE ALWAYS TRIGGER entry_insert_audit;
ALTER TABLE waitlist.entry ENABLE ALWAYS TRIGGER entry_update_audit;
ALTER TABLE waitlist.offer ENABLE ALWAYS TRIGGER offer_insert_audit;
ALTER TABLE waitlist.offer ENABLE ALWAYS TRIGGER offer_update_audit;

/* Rows of the log come from record_transitions() (or a superuser's restore). */
CREATE FUNCTION waitlist.transition_insert_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'waitlist_transition_insert_guard'
LANGUAGE C;

CREATE TRIGGER transition_insert_guard
    BEFORE INSERT ON waitlist.transition
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.transition_insert_guard();
ALTER TABLE waitlist.transition ENABLE ALWAYS TRIGGER transition_insert_guard;

/*
 * DDL that would switch the guards off or rewrite the log is refused before
 * it runs, from any role, except in this extension's own scripts.
 */
CREATE FUNCTION waitlist.audit_ddl_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'waitlist_audit_ddl_guard'
LANGUAGE C;

CREATE EVENT TRIGGER waitlist_audit_ddl_guard ON ddl_command_start
    EXECUTE FUNCTION waitlist.audit_ddl_guard();
ALTER EVENT TRIGGER waitlist_audit_ddl_guard ENABLE ALWAYS;

REVOKE ALL ON FUNCTION waitlist.transition_insert_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist.audit_ddl_guard() FROM PUBLIC;

/* ---- backups: tables and sequences that pg_dump must keep ---- */

/*
 * pg_dump skips the contents of an extension's tables and sequences unless
 * they are registered here, so a dump and restore of 1.0 gave back empty
 * tables.  Every table is dumped whole; every sequence (the identity ones
 * included, through pg_get_serial_sequence) keeps its position, so ids keep
 * growing after a restore.
 */
SELECT pg_catalog.pg_extension_config_dump('waitlist.resource', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.entry', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.offer', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.accept_request', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.capacity_event', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.channel', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.transition', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.entry_seq', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist.lease_token_seq', '');
-- one call per statement: each call rewrites the extension's catalog row
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('waitlist.entry', 'entry_id')::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('waitlist.offer', 'offer_id')::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('waitlist.outbox', 'outbox_id')::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('waitlist.transition', 'transition_id')::pg_catalog.regclass, '');

/*
 * waitlist.channel is dumped whole, but CREATE EXTENSION, which a restore
 * runs first, has already inserted the four channels: the restored rows
 * would collide with them and the restore would lose the rates set with
 * waitlist_set_channel_rate.  An inserted channel row therefore replaces a
 * row of that channel still as the install script made it (no rate, no
 * burst); a configured channel is never replaced, and inserting it again
 * is still a duplicate key.
 */
CREATE FUNCTION waitlist.channel_replace_default()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM waitlist.channel c
    WHERE c.channel OPERATOR(pg_catalog.=) NEW.channel
      AND c.rate_per_second IS NULL AND c.burst IS NULL;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION waitlist.channel_replace_default() FROM PUBLIC;
CREATE TRIGGER channel_replace_default
    BEFORE INSERT ON waitlist.channel
    FOR EACH ROW EXECUTE FUNCTION waitlist.channel_replace_default();
-- a restore runs with session_replication_role = replica (see README)
ALTER TABLE waitlist.channel ENABLE ALWAYS TRIGGER channel_replace_default;


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
 WHERE offer_ttl OPERATOR(pg_catalog.>) interval '1 year';
UPDATE waitlist.resource SET wave_interval = interval '1 year'
 WHERE wave_interval OPERATOR(pg_catalog.>) interval '1 year';
UPDATE waitlist.resource SET max_waiting = 1000000000
 WHERE max_waiting OPERATOR(pg_catalog.>) 1000000000;
UPDATE waitlist.resource SET wave_size = 1000000
 WHERE wave_size OPERATOR(pg_catalog.>) 1000000;
-- a wave that started later than now was written by hand: it starts now
UPDATE waitlist.resource SET wave_started_at = pg_catalog.now()
 WHERE wave_started_at OPERATOR(pg_catalog.>) pg_catalog.now();
/*
 * resource_wave_timestamps_valid: the end of a wave is a timestamp.  A row whose wave
 * would end past the last one cannot be written (the check itself fails with
 * 22008), so waitlist_check() can compute every wave's end.
 */
ALTER TABLE waitlist.resource
    ADD CONSTRAINT resource_wave_timestamps_valid
        CHECK ((wave_started_at OPERATOR(pg_catalog.+) wave_interval)
               OPERATOR(pg_catalog.>=) wave_started_at),
    ADD CONSTRAINT resource_offer_ttl_bounded
        CHECK (offer_ttl OPERATOR(pg_catalog.<=) interval '1 year'),
    ADD CONSTRAINT resource_wave_interval_bounded
        CHECK (wave_interval OPERATOR(pg_catalog.<=) interval '1 year'),
    ADD CONSTRAINT resource_max_waiting_bounded
        CHECK (max_waiting OPERATOR(pg_catalog.<=) 1000000000),
    ADD CONSTRAINT resource_wave_size_bounded
        CHECK (wave_size OPERATOR(pg_catalog.<=) 1000000);

UPDATE waitlist.channel
   SET rate_per_second = LEAST(GREATEST(rate_per_second, 0.000001), 1000000)
 WHERE rate_per_second OPERATOR(pg_catalog.<) 0.000001
    OR rate_per_second OPERATOR(pg_catalog.>) 1000000;
-- a bucket needs a size (one second's worth by default), an unlimited channel none
UPDATE waitlist.channel
   SET burst = CASE WHEN rate_per_second IS NOT NULL
                    THEN LEAST(coalesce(burst, pg_catalog.ceil(rate_per_second)::integer), 1000000) END
 WHERE (rate_per_second IS NULL) OPERATOR(pg_catalog.<>) (burst IS NULL)
    OR burst OPERATOR(pg_catalog.>) 1000000;
UPDATE waitlist.channel SET tokens = LEAST(GREATEST(tokens, 0), coalesce(burst, 0))
 WHERE NOT (tokens OPERATOR(pg_catalog.>=) 0
            AND tokens OPERATOR(pg_catalog.<=) coalesce(burst, 0));
ALTER TABLE waitlist.channel
    ADD CONSTRAINT channel_rate_bounded
        CHECK (rate_per_second OPERATOR(pg_catalog.>=) 0.000001
               AND rate_per_second OPERATOR(pg_catalog.<=) 1000000),
    ADD CONSTRAINT channel_burst_bounded CHECK (burst OPERATOR(pg_catalog.<=) 1000000),
    ADD CONSTRAINT channel_burst_with_rate
        CHECK ((rate_per_second IS NULL) OPERATOR(pg_catalog.=) (burst IS NULL));


/* ---- outbox: claims fair across channels ---- */

-- each channel's pending rows in claim order: a claim scans every channel on its own
CREATE INDEX outbox_pending_channel_idx ON waitlist.outbox (channel, outbox_id) INCLUDE (resource_id)
    WHERE state OPERATOR(pg_catalog.=) 'PENDING';


/* ---- capacity trigger ---- */


/* ---- pg_cron scheduling ---- */

COMMENT ON FUNCTION waitlist_unschedule_sweep() IS 'removes this database''s pg_cron job "waitlist-sweep" (its owner, database and command), no other job of that name; false if there was none';


/* ---- promotion workers and capacity events ---- */


/* ---- gate protocol and isolation levels ---- */



/* ---- hostile review: settings that change what SQL computes ---- */

/*
 * The C API pins these for its own SQL (src/api.c); waitlist_check() is
 * plpgsql and pinned only search_path, so a caller's TimeZone moved every
 * wave's end it computed (a day is 23 hours across a DST change) and it
 * reported throttled resources as idle, or idle ones as throttled.  Kept
 * last in this script, so that a later replacement of the function keeps
 * these settings.
 */
ALTER FUNCTION waitlist_check(text, interval)
    SET TimeZone = 'UTC'
    SET DateStyle = 'ISO, MDY'
    SET IntervalStyle = 'postgres'
    SET standard_conforming_strings = on
    SET transform_null_equals = off
    SET array_nulls = on;
