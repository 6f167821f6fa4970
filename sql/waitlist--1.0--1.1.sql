/* waitlist--1.0--1.1.sql: upgrade the waitlist extension from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION waitlist UPDATE TO '1.1'" to load this file. \quit

/*
 * A fresh CREATE EXTENSION runs waitlist--1.1.sql, which make puts together
 * from sql/install-guard.sql.in, the frozen 1.0 script and this one: a
 * fresh 1.1 and an updated 1.0 are built by the same statements, and
 * test/t/030_upgrade.pl compares the two.  Everything here must also work
 * on a populated 1.0 database.
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
-- a restore runs with session_replication_role = replica (docs/operations.md)
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


/* ---- pg_cron scheduling ---- */

COMMENT ON FUNCTION waitlist_unschedule_sweep() IS 'removes this database''s pg_cron job "waitlist-sweep" (its owner, database and command), no other job of that name; false if there was none';


/* ---- promotion workers and capacity events ---- */

/*
 * Functions whose signature 1.1 changes (new arguments, new OUT columns) are
 * dropped and made again; the EXECUTE grants DBAs gave on them (to a
 * monitoring role, say) are kept.  These two helpers read and give them
 * back; the end of this script drops them.  PUBLIC keeps nothing: the end of
 * this script revokes it everywhere.
 */
CREATE FUNCTION waitlist.execute_grantees(f pg_catalog.regprocedure)
RETURNS pg_catalog.oid[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $grantees$
    SELECT coalesce(pg_catalog.array_agg(a.grantee), '{}')
      FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid OPERATOR(pg_catalog.=) f
       AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
       AND a.grantee OPERATOR(pg_catalog.<>) 0
$grantees$;

/*
 * (A GRANT run by an extension script is recorded as one of the extension's
 * initial privileges, which pg_dump leaves out; the end of this script
 * takes these out of them again.)
 */
CREATE FUNCTION waitlist.grant_execute(f pg_catalog.regprocedure, grantees pg_catalog.oid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $grant$
DECLARE
    g pg_catalog.oid;
BEGIN
    FOREACH g IN ARRAY grantees LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', f, pg_catalog.pg_get_userbyid(g));
    END LOOP;
END
$grant$;

-- the rounds counter: how often each worker looked for work (a worker that
-- spins shows it here).  A new OUT column needs the function recreated; the
-- EXECUTE grants a DBA gave on it (to a monitoring role, say) are kept.
DO $upgrade$
DECLARE
    grantees pg_catalog.oid[];
BEGIN
    grantees := waitlist.execute_grantees('@extschema@.waitlist_worker_status()');

    DROP FUNCTION @extschema@.waitlist_worker_status();
    CREATE FUNCTION @extschema@.waitlist_worker_status(OUT worker integer,
                                           OUT pid integer,
                                           OUT resources_owned bigint,
                                           OUT last_wake timestamptz,
                                           OUT events_processed bigint,
                                           OUT offers_made bigint,
                                           OUT offers_expired bigint,
                                           OUT last_error text,
                                           OUT last_error_at timestamptz,
                                           OUT rounds bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'waitlist_worker_status'
    LANGUAGE C;
    COMMENT ON FUNCTION @extschema@.waitlist_worker_status() IS 'one row per promotion worker: pid, share, last wake-up and counters';
    REVOKE ALL ON FUNCTION @extschema@.waitlist_worker_status() FROM PUBLIC;

    PERFORM waitlist.grant_execute('@extschema@.waitlist_worker_status()', grantees);
END
$upgrade$;


/* ---- the accept saga and offer extensions ---- */

/*
 * How a resource books (src/resource.c): 'none', 'function' (its booking
 * function, in the accept's transaction) or 'external' (the accept saga:
 * an external booking service asked through the outbox, reporting back
 * with waitlist_booking_confirmed() and waitlist_booking_failed()).  1.0's
 * resources keep what they did.  The bounds are those checked when a
 * setting is set.
 */
ALTER TABLE waitlist.resource
    ADD COLUMN booking text NOT NULL DEFAULT 'none',
    ADD COLUMN booking_timeout interval NOT NULL DEFAULT '2 minutes',
    ADD COLUMN booking_max_attempts integer NOT NULL DEFAULT 5,
    ADD COLUMN max_offer_extension interval;
UPDATE waitlist.resource SET booking = 'function' WHERE booking_function IS NOT NULL;
ALTER TABLE waitlist.resource
    ADD CONSTRAINT resource_booking_valid
        CHECK (booking OPERATOR(pg_catalog.=) ANY (ARRAY['none', 'function', 'external'])
               AND (booking OPERATOR(pg_catalog.=) 'function') OPERATOR(pg_catalog.=) (booking_function IS NOT NULL)),
    ADD CONSTRAINT resource_booking_timeout_bounded
        CHECK (booking_timeout OPERATOR(pg_catalog.>) interval '0'
               AND booking_timeout OPERATOR(pg_catalog.<=) interval '1 year'),
    ADD CONSTRAINT resource_booking_max_attempts_bounded
        CHECK (booking_max_attempts OPERATOR(pg_catalog.>=) 1
               AND booking_max_attempts OPERATOR(pg_catalog.<=) 100),
    ADD CONSTRAINT resource_max_offer_extension_bounded
        CHECK (max_offer_extension OPERATOR(pg_catalog.>=) interval '0'
               AND max_offer_extension OPERATOR(pg_catalog.<=) interval '1 year');
COMMENT ON COLUMN waitlist.resource.booking IS 'none, function (booking_function) or external (the accept saga)';
COMMENT ON COLUMN waitlist.resource.max_offer_extension IS 'the most an offer may be extended by in all; NULL: one offer_ttl';

/*
 * An accepted offer of an external resource is ACCEPTING while the booking
 * service books: it holds its unit, its entry stays OFFERED.
 */
ALTER TABLE waitlist.offer
    ADD COLUMN booking_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN booking_deadline timestamptz,
    ADD COLUMN extended_by interval NOT NULL DEFAULT '0';
ALTER TABLE waitlist.offer
    DROP CONSTRAINT offer_state_valid,
    ADD CONSTRAINT offer_state_valid
        CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'REVOKED', 'FAILED']));
COMMENT ON COLUMN waitlist.offer.booking_deadline IS 'when the accept saga ends by itself (EXPIRED) unless the booking service has reported';
COMMENT ON COLUMN waitlist.offer.extended_by IS 'what waitlist_extend_offer() added to expires_at, in all';
-- the sagas the worker and the sweep end at their deadline
CREATE INDEX offer_booking_deadline_idx ON waitlist.offer (booking_deadline, resource_id)
    WHERE state OPERATOR(pg_catalog.=) 'ACCEPTING';

-- a request that started or joined a saga records ACCEPTING, and answers with the saga's state
ALTER TABLE waitlist.accept_request
    DROP CONSTRAINT accept_request_state_valid,
    ADD CONSTRAINT accept_request_state_valid
        CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTED', 'FAILED', 'ACCEPTING']));

-- the booking service's rows: booking requests, and bookings it must undo
ALTER TABLE waitlist.outbox
    DROP CONSTRAINT outbox_channel_valid,
    ADD CONSTRAINT outbox_channel_valid
        CHECK (channel OPERATOR(pg_catalog.=) ANY (ARRAY['email', 'sms', 'push', 'webhook', 'booking']));
INSERT INTO waitlist.channel (channel) VALUES ('booking') ON CONFLICT DO NOTHING;

/*
 * Every extension of an offer, once per key: who asked, by how much, why,
 * and the deadline it gave (the idempotent answer).  The audit trail has its
 * transition (extend) as well.
 */
CREATE TABLE waitlist.offer_extension (
    resource_id     text        NOT NULL,
    offer_id        bigint      NOT NULL,
    idempotency_key text        NOT NULL,
    by_interval     interval    NOT NULL,
    reason          text        NOT NULL,
    expires_at      timestamptz NOT NULL,
    actor           name        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT offer_extension_pkey PRIMARY KEY (resource_id, offer_id, idempotency_key)
);
COMMENT ON TABLE waitlist.offer_extension IS 'one row per extension of an offer (waitlist_extend_offer()), keyed by its idempotency key';
SELECT pg_catalog.pg_extension_config_dump('waitlist.offer_extension', '');

/*
 * The settings of 1.1 (booking, extensions, and those of the ordering rules,
 * positions, join rates, the cutoff and parties below) are new arguments of waitlist_create_resource() and
 * waitlist_alter_resource(): both are made again, and the EXECUTE grants a
 * DBA gave on them are kept.
 */
DO $upgrade$
DECLARE
    create_grantees pg_catalog.oid[];
    alter_grantees pg_catalog.oid[];
BEGIN
    create_grantees := waitlist.execute_grantees('@extschema@.waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval)');
    alter_grantees := waitlist.execute_grantees('@extschema@.waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean)');

    DROP FUNCTION @extschema@.waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval);
    CREATE FUNCTION @extschema@.waitlist_create_resource(resource_id text,
                                             offer_ttl interval DEFAULT '15 minutes',
                                             max_waiting bigint DEFAULT NULL,
                                             booking_function regprocedure DEFAULT NULL,
                                             channels text[] DEFAULT NULL,
                                             wave_size integer DEFAULT NULL,
                                             wave_interval interval DEFAULT NULL,
                                             booking text DEFAULT NULL,
                                             booking_timeout interval DEFAULT '2 minutes',
                                             booking_max_attempts integer DEFAULT 5,
                                             max_offer_extension interval DEFAULT NULL,
                                             aging_interval interval DEFAULT NULL,
                                             confirm_within interval DEFAULT NULL,
                                             confirm_place_from text DEFAULT 'join',
                                             position_visibility text DEFAULT 'exact',
                                             position_bands integer[] DEFAULT NULL,
                                             join_rate_per_second double precision DEFAULT NULL,
                                             join_burst integer DEFAULT NULL,
                                             offers_close_at timestamptz DEFAULT NULL,
                                             min_offer_ttl interval DEFAULT NULL,
                                             ttl_shrink boolean DEFAULT false,
                                             max_party_size integer DEFAULT 1,
                                             party_policy text DEFAULT 'strict',
                                             offer_fanout integer DEFAULT 1)
    RETURNS void
    AS 'MODULE_PATHNAME', 'waitlist_create_resource'
    LANGUAGE C CALLED ON NULL INPUT;
    COMMENT ON FUNCTION @extschema@.waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval, text, interval, integer, interval, interval, interval, text, text, integer[], double precision, integer, timestamp with time zone, interval, boolean, integer, text, integer) IS 'creates a waitlisted resource';

    DROP FUNCTION @extschema@.waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean);
    CREATE FUNCTION @extschema@.waitlist_alter_resource(resource_id text,
                                            offer_ttl interval DEFAULT NULL,
                                            max_waiting bigint DEFAULT NULL,
                                            clear_max_waiting boolean DEFAULT false,
                                            booking_function regprocedure DEFAULT NULL,
                                            clear_booking_function boolean DEFAULT false,
                                            channels text[] DEFAULT NULL,
                                            wave_size integer DEFAULT NULL,
                                            wave_interval interval DEFAULT NULL,
                                            clear_waves boolean DEFAULT false,
                                            booking text DEFAULT NULL,
                                            booking_timeout interval DEFAULT NULL,
                                            booking_max_attempts integer DEFAULT NULL,
                                            max_offer_extension interval DEFAULT NULL,
                                            clear_max_offer_extension boolean DEFAULT false,
                                            aging_interval interval DEFAULT NULL,
                                            clear_aging_interval boolean DEFAULT false,
                                            confirm_within interval DEFAULT NULL,
                                            clear_confirm_within boolean DEFAULT false,
                                            confirm_place_from text DEFAULT NULL,
                                            position_visibility text DEFAULT NULL,
                                            position_bands integer[] DEFAULT NULL,
                                            clear_position_bands boolean DEFAULT false,
                                            join_rate_per_second double precision DEFAULT NULL,
                                            join_burst integer DEFAULT NULL,
                                            clear_join_rate boolean DEFAULT false,
                                            offers_close_at timestamptz DEFAULT NULL,
                                            clear_offers_close_at boolean DEFAULT false,
                                            min_offer_ttl interval DEFAULT NULL,
                                            clear_min_offer_ttl boolean DEFAULT false,
                                            ttl_shrink boolean DEFAULT NULL,
                                            max_party_size integer DEFAULT NULL,
                                            party_policy text DEFAULT NULL,
                                            offer_fanout integer DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'waitlist_alter_resource'
    LANGUAGE C CALLED ON NULL INPUT;
    COMMENT ON FUNCTION @extschema@.waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean, text, interval, integer, interval, boolean, interval, boolean, interval, boolean, text, text, integer[], boolean, double precision, integer, boolean, timestamp with time zone, boolean, interval, boolean, boolean, integer, text, integer) IS 'changes a resource''s settings; NULL keeps a setting as it is';

    PERFORM waitlist.grant_execute('@extschema@.waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval, text, interval, integer, interval, interval, interval, text, text, integer[], double precision, integer, timestamp with time zone, interval, boolean, integer, text, integer)', create_grantees);
    PERFORM waitlist.grant_execute('@extschema@.waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean, text, interval, integer, interval, boolean, interval, boolean, interval, boolean, text, text, integer[], boolean, double precision, integer, boolean, timestamp with time zone, boolean, interval, boolean, boolean, integer, text, integer)', alter_grantees);
END
$upgrade$;

CREATE FUNCTION waitlist_booking_confirmed(offer_id bigint, reservation_ref text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_booking_confirmed'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_booking_confirmed(bigint, text) IS 'the booking service booked an ACCEPTING offer: ACCEPTED; false if this reservation was confirmed before';

CREATE FUNCTION waitlist_booking_failed(offer_id bigint, reason text, retryable boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'waitlist_booking_failed'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_booking_failed(bigint, text, boolean) IS 'the booking service could not book an ACCEPTING offer: retried, FAILED or EXPIRED; returns the offer''s state';

CREATE FUNCTION waitlist_extend_offer(offer_id bigint, by_interval interval, reason text, idempotency_key text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'waitlist_extend_offer'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_extend_offer(bigint, interval, text, text) IS 'gives an open offer more time, within the resource''s max_offer_extension; returns the new expires_at';

/* ---- fair order: aging, rule versions, confirmed places, positions ---- */

/*
 * The ordering rules of a resource (src/transition.c): aging_interval earns
 * a waiting fan one priority point per interval waited (NULL: strict
 * priority, then arrival), confirm_within makes a join PENDING until
 * waitlist_confirm() (NULL: a join waits at once), confirm_place_from says
 * whether a confirmed place counts from the join or the confirmation.
 * rule_version names the rules and their version; every transition records
 * it, and every change of the rules bumps it and is audited as a transition
 * of the resource.  position_visibility and position_bands say what
 * waitlist_status() shows of a fan's place.
 */
ALTER TABLE waitlist.resource
    ADD COLUMN aging_interval interval,
    ADD COLUMN confirm_within interval,
    ADD COLUMN confirm_place_from text NOT NULL DEFAULT 'join',
    ADD COLUMN rule_version text NOT NULL DEFAULT 'priority-fifo/1',
    ADD COLUMN position_visibility text NOT NULL DEFAULT 'exact',
    ADD COLUMN position_bands integer[];
ALTER TABLE waitlist.resource
    ADD CONSTRAINT resource_aging_interval_bounded
        CHECK (aging_interval OPERATOR(pg_catalog.>) interval '0'
               AND aging_interval OPERATOR(pg_catalog.<=) interval '1 year'),
    ADD CONSTRAINT resource_confirm_within_bounded
        CHECK (confirm_within OPERATOR(pg_catalog.>) interval '0'
               AND confirm_within OPERATOR(pg_catalog.<=) interval '1 year'),
    ADD CONSTRAINT resource_confirm_place_from_valid
        CHECK (confirm_place_from OPERATOR(pg_catalog.=) ANY (ARRAY['join', 'confirm'])),
    ADD CONSTRAINT resource_position_visibility_valid
        CHECK (position_visibility OPERATOR(pg_catalog.=) ANY (ARRAY['exact', 'band', 'none'])),
    ADD CONSTRAINT resource_position_bands_valid
        CHECK (pg_catalog.cardinality(position_bands) OPERATOR(pg_catalog.>=) 1
               AND pg_catalog.cardinality(position_bands) OPERATOR(pg_catalog.<=) 20);
COMMENT ON COLUMN waitlist.resource.rule_version IS 'the ordering rules and their version, recorded on every transition';

/*
 * rank_key orders the line: priority - (joined epoch / aging_interval)
 * orders fans as their aged priorities do at every instant, so it is stored
 * once and indexed (priority itself without aging).  PENDING entries wait
 * for their confirmation until confirm_by.
 */
ALTER TABLE waitlist.entry
    ADD COLUMN rank_key double precision,
    ADD COLUMN confirm_by timestamptz,
    ADD COLUMN confirmed_at timestamptz;
UPDATE waitlist.entry SET rank_key = priority
WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['WAITING', 'OFFERED']);
ALTER TABLE waitlist.entry
    DROP CONSTRAINT entry_state_valid,
    ADD CONSTRAINT entry_state_valid
        CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'CANCELLED'])),
    ADD CONSTRAINT entry_ranked
        CHECK (rank_key IS NOT NULL OR NOT state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED']));
-- the line, in rank order; 1.0's index by priority goes
CREATE INDEX entry_rank_idx ON waitlist.entry (resource_id, rank_key DESC, seq)
    WHERE state OPERATOR(pg_catalog.=) 'WAITING';
DROP INDEX waitlist.entry_line_idx;
-- a PENDING entry holds its fan's place as well: a double tap finds it
CREATE UNIQUE INDEX entry_active_user_key_11 ON waitlist.entry (resource_id, user_id)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED']);
DROP INDEX waitlist.entry_active_user_key;
ALTER INDEX waitlist.entry_active_user_key_11 RENAME TO entry_active_user_key;
-- the places the worker and the sweep let go unconfirmed
CREATE INDEX entry_confirm_by_idx ON waitlist.entry (confirm_by, resource_id)
    WHERE state OPERATOR(pg_catalog.=) 'PENDING';

-- a rule change is a transition of its resource
ALTER TABLE waitlist.transition
    DROP CONSTRAINT transition_entity_valid,
    ADD CONSTRAINT transition_entity_valid
        CHECK (entity OPERATOR(pg_catalog.=) ANY (ARRAY['entry', 'offer', 'resource']));

CREATE FUNCTION waitlist_confirm(entry_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_confirm'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_confirm(bigint) IS 'confirms a PENDING place (PENDING -> WAITING); false if it was confirmed before';

/* ---- join rate limits ---- */

/*
 * Joins beyond a resource's rate are refused (WL018), against a token bucket
 * in shared memory (src/shmem.c), not a row every join would update: a
 * storm of bots is turned away without queuing on the resource.  NULL: no
 * limit.  The bounds are those of the channels' rates.
 */
ALTER TABLE waitlist.resource
    ADD COLUMN join_rate_per_second double precision,
    ADD COLUMN join_burst integer;
ALTER TABLE waitlist.resource
    ADD CONSTRAINT resource_join_rate_bounded
        CHECK (join_rate_per_second OPERATOR(pg_catalog.>=) 0.000001
               AND join_rate_per_second OPERATOR(pg_catalog.<=) 1000000),
    ADD CONSTRAINT resource_join_burst_bounded
        CHECK (join_burst OPERATOR(pg_catalog.>=) 1 AND join_burst OPERATOR(pg_catalog.<=) 1000000),
    ADD CONSTRAINT resource_join_rate_given_with_burst
        CHECK ((join_rate_per_second IS NULL) OPERATOR(pg_catalog.=) (join_burst IS NULL));
COMMENT ON COLUMN waitlist.resource.join_rate_per_second IS 'joins per second admitted (NULL: no limit), with bursts of join_burst';

/* ---- the offer cutoff ---- */

/*
 * offers_close_at: no offer is made after it, and none lasts past it; no
 * offer has less time than min_offer_ttl (the units go back to the booking
 * system instead, counted in units_returned, with a capacity_returned
 * outbox row); with ttl_shrink an offer lasts a quarter of the time left
 * before the cutoff (at least min_offer_ttl, at most offer_ttl).  At the
 * cutoff the line closes, once (closed_at): those in it are told
 * (waitlist_closed) and their entries end EXPIRED, reason closed.
 */
ALTER TABLE waitlist.resource
    ADD COLUMN offers_close_at timestamptz,
    ADD COLUMN min_offer_ttl interval,
    ADD COLUMN ttl_shrink boolean NOT NULL DEFAULT false,
    ADD COLUMN closed_at timestamptz,
    ADD COLUMN units_returned bigint NOT NULL DEFAULT 0;
ALTER TABLE waitlist.resource
    ADD CONSTRAINT resource_min_offer_ttl_bounded
        CHECK (min_offer_ttl OPERATOR(pg_catalog.>) interval '0'
               AND min_offer_ttl OPERATOR(pg_catalog.<=) interval '1 year'),
    ADD CONSTRAINT resource_units_returned_nonnegative
        CHECK (units_returned OPERATOR(pg_catalog.>=) 0);
COMMENT ON COLUMN waitlist.resource.units_returned IS 'units handed back to the booking system at the offer cutoff (capacity_returned)';
-- the lines the worker and the sweep close at their cutoff
CREATE INDEX resource_closing_idx ON waitlist.resource (offers_close_at)
    WHERE closed_at IS NULL AND offers_close_at IS NOT NULL;

/* ---- party sizes and parallel offers ---- */

/*
 * A fan may join for a party (quantity, at most the resource's
 * max_party_size); an offer holds all of its party's units (units).  With
 * party_policy 'strict' the head of the line waits until enough units are
 * free; with 'skip_to_fit' the first party in line that fits is offered and
 * those passed over keep their place.  With offer_fanout K a free unit is
 * offered to the next K fans at once: their offers share a unit_id, the
 * first accept takes the unit and the others are revoked (filled), their
 * fans back at their place.  Parties and fanned-out units do not mix: a
 * fanned-out unit is one unit.
 */
ALTER TABLE waitlist.resource
    ADD COLUMN max_party_size integer NOT NULL DEFAULT 1,
    ADD COLUMN party_policy text NOT NULL DEFAULT 'strict',
    ADD COLUMN offer_fanout integer NOT NULL DEFAULT 1;
ALTER TABLE waitlist.resource
    ADD CONSTRAINT resource_max_party_size_bounded
        CHECK (max_party_size OPERATOR(pg_catalog.>=) 1 AND max_party_size OPERATOR(pg_catalog.<=) 1000),
    ADD CONSTRAINT resource_party_policy_valid
        CHECK (party_policy OPERATOR(pg_catalog.=) ANY (ARRAY['strict', 'skip_to_fit'])),
    ADD CONSTRAINT resource_offer_fanout_bounded
        CHECK (offer_fanout OPERATOR(pg_catalog.>=) 1 AND offer_fanout OPERATOR(pg_catalog.<=) 50),
    ADD CONSTRAINT resource_fanout_without_parties
        CHECK (offer_fanout OPERATOR(pg_catalog.=) 1 OR max_party_size OPERATOR(pg_catalog.=) 1);
COMMENT ON COLUMN waitlist.resource.max_party_size IS 'the largest party a fan may join for (quantity of waitlist_join())';
COMMENT ON COLUMN waitlist.resource.party_policy IS 'strict: the head of the line waits for enough units; skip_to_fit: the first party that fits is offered';
COMMENT ON COLUMN waitlist.resource.offer_fanout IS 'how many fans each free unit is offered to at once; the first accept takes it';

ALTER TABLE waitlist.entry
    ADD COLUMN quantity integer NOT NULL DEFAULT 1;
ALTER TABLE waitlist.entry
    ADD CONSTRAINT entry_quantity_positive CHECK (quantity OPERATOR(pg_catalog.>=) 1);
COMMENT ON COLUMN waitlist.entry.quantity IS 'the size of the fan''s party: the units an offer to them holds';

CREATE SEQUENCE waitlist.offer_unit_seq;
SELECT pg_catalog.pg_extension_config_dump('waitlist.offer_unit_seq', '');
ALTER TABLE waitlist.offer
    ADD COLUMN units integer NOT NULL DEFAULT 1,
    ADD COLUMN unit_id bigint;
ALTER TABLE waitlist.offer
    ADD CONSTRAINT offer_units_positive CHECK (units OPERATOR(pg_catalog.>=) 1),
    ADD CONSTRAINT offer_fanned_out_unit_single
        CHECK (unit_id IS NULL OR units OPERATOR(pg_catalog.=) 1);
COMMENT ON COLUMN waitlist.offer.units IS 'the units of capacity the offer holds: its party''s size';
COMMENT ON COLUMN waitlist.offer.unit_id IS 'shared by the offers of one fanned-out unit (offer_fanout > 1); NULL for an offer of its own units';
-- the offers of one fanned-out unit
CREATE INDEX offer_unit_idx ON waitlist.offer (resource_id, unit_id) WHERE unit_id IS NOT NULL;
-- a fanned-out unit is taken (accepted, booking, or retired by its booking) at most once
CREATE UNIQUE INDEX offer_unit_taken_once_key ON waitlist.offer (resource_id, unit_id)
    WHERE unit_id IS NOT NULL
      AND state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTING', 'ACCEPTED', 'FAILED']);

-- the party size is a new argument of waitlist_join(); the EXECUTE grants a
-- DBA gave on it are kept
DO $upgrade$
DECLARE
    grantees pg_catalog.oid[];
BEGIN
    grantees := waitlist.execute_grantees('@extschema@.waitlist_join(text, text, integer)');

    DROP FUNCTION @extschema@.waitlist_join(text, text, integer);
    CREATE FUNCTION @extschema@.waitlist_join(resource_id text, user_id text,
                                  priority integer DEFAULT 0,
                                  quantity integer DEFAULT 1)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'waitlist_join'
    LANGUAGE C CALLED ON NULL INPUT;
    COMMENT ON FUNCTION @extschema@.waitlist_join(text, text, integer, integer) IS 'joins a fan (with a party of quantity) to a resource''s waitlist; idempotent while the entry is active';
    REVOKE ALL ON FUNCTION @extschema@.waitlist_join(text, text, integer, integer) FROM PUBLIC;

    PERFORM waitlist.grant_execute('@extschema@.waitlist_join(text, text, integer, integer)', grantees);
END
$upgrade$;

/* ---- positions ---- */

/*
 * What waitlist_status() reads of a long line instead of counting it
 * (src/entry.c): every 1,000th WAITING entry's (rank_key, seq) and the
 * last one's, with their positions as of taken_at, under the resource's
 * rule_version (a rule change ranks the line again, and so voids it), and
 * the resource's offers of the hour before.  A status call that finds it
 * older than a second refreshes it, one at a time; joins and promotions
 * never touch it, so no join writes a shared row.  Derived data: pg_dump
 * leaves it out and the first status call after a restore takes it again.
 */
CREATE TABLE waitlist.line_sample (
    resource_id     text        NOT NULL,
    taken_at        timestamptz NOT NULL,
    rule_version    text        NOT NULL,
    sample_rank     double precision[] NOT NULL,
    sample_seq      bigint[]    NOT NULL,
    sample_position bigint[]    NOT NULL,
    offers_per_hour double precision NOT NULL,
    CONSTRAINT line_sample_pkey PRIMARY KEY (resource_id),
    CONSTRAINT line_sample_resource_fkey FOREIGN KEY (resource_id)
        REFERENCES waitlist.resource (resource_id) ON DELETE CASCADE
);
COMMENT ON TABLE waitlist.line_sample IS 'every 1,000th waiting entry of a line and the last, with their positions, and the offers of the last hour, refreshed by waitlist_status() at most once a second';

-- the offers of a resource's last hour, for its promotion rate
CREATE INDEX offer_created_idx ON waitlist.offer (resource_id, created_at);

-- band, estimated_wait and estimate_note: new OUT columns need the function
-- recreated; the EXECUTE grants a DBA gave on it are kept
DO $upgrade$
DECLARE
    grantees pg_catalog.oid[];
BEGIN
    grantees := waitlist.execute_grantees('@extschema@.waitlist_status(bigint)');

    DROP FUNCTION @extschema@.waitlist_status(bigint);
    CREATE FUNCTION @extschema@.waitlist_status(entry_id bigint,
                                    OUT state text,
                                    OUT "position" bigint,
                                    OUT offer_id bigint,
                                    OUT offer_expires_at timestamptz,
                                    OUT band text,
                                    OUT estimated_wait interval,
                                    OUT estimate_note text)
    RETURNS record
    AS 'MODULE_PATHNAME', 'waitlist_status'
    LANGUAGE C CALLED ON NULL INPUT;
    COMMENT ON FUNCTION @extschema@.waitlist_status(bigint) IS 'an entry''s state, its place in line (as the resource shows it), its open offer and its estimated wait';
    REVOKE ALL ON FUNCTION @extschema@.waitlist_status(bigint) FROM PUBLIC;

    PERFORM waitlist.grant_execute('@extschema@.waitlist_status(bigint)', grantees);
END
$upgrade$;

/* ---- retention: the archive ---- */

/*
 * Terminal entries, with their offers, outbox rows, accept requests and
 * transitions, and processed capacity events move to schema
 * waitlist_archive (waitlist_archive()), so the hot tables hold what is
 * alive plus a retention window.  The archive tables are the hot ones'
 * columns (LIKE, so this section comes after every section that adds
 * columns to them: those come along) and archived_at; they keep the hot
 * keys.
 */
CREATE SCHEMA waitlist_archive;
REVOKE ALL ON SCHEMA waitlist_archive FROM PUBLIC;
COMMENT ON SCHEMA waitlist_archive IS 'rows waitlist_archive() moved out of the hot tables of schema waitlist';

CREATE TABLE waitlist_archive.entry (
    LIKE waitlist.entry,
    archived_at timestamptz NOT NULL,
    CONSTRAINT entry_pkey PRIMARY KEY (resource_id, entry_id)
);
CREATE INDEX entry_entry_id_idx ON waitlist_archive.entry (entry_id);
CREATE INDEX entry_user_idx ON waitlist_archive.entry (resource_id, user_id);

CREATE TABLE waitlist_archive.offer (
    LIKE waitlist.offer,
    archived_at timestamptz NOT NULL,
    CONSTRAINT offer_pkey PRIMARY KEY (resource_id, offer_id)
);
CREATE INDEX offer_offer_id_idx ON waitlist_archive.offer (offer_id);
CREATE INDEX offer_entry_idx ON waitlist_archive.offer (resource_id, entry_id);

CREATE TABLE waitlist_archive.accept_request (
    LIKE waitlist.accept_request,
    archived_at timestamptz NOT NULL,
    CONSTRAINT accept_request_pkey PRIMARY KEY (resource_id, offer_id, idempotency_key)
);

CREATE TABLE waitlist_archive.offer_extension (
    LIKE waitlist.offer_extension,
    archived_at timestamptz NOT NULL,
    CONSTRAINT offer_extension_pkey PRIMARY KEY (resource_id, offer_id, idempotency_key)
);

CREATE TABLE waitlist_archive.capacity_event (
    LIKE waitlist.capacity_event,
    archived_at timestamptz NOT NULL,
    CONSTRAINT capacity_event_pkey PRIMARY KEY (resource_id, event_id)
);

CREATE TABLE waitlist_archive.outbox (
    LIKE waitlist.outbox,
    archived_at timestamptz NOT NULL,
    CONSTRAINT outbox_pkey PRIMARY KEY (resource_id, outbox_id)
);
CREATE INDEX outbox_offer_idx ON waitlist_archive.outbox (resource_id, offer_id);

CREATE TABLE waitlist_archive.transition (
    LIKE waitlist.transition,
    archived_at timestamptz NOT NULL,
    CONSTRAINT transition_pkey PRIMARY KEY (resource_id, transition_id)
);
CREATE INDEX transition_entity_idx ON waitlist_archive.transition (resource_id, entity, entity_id, transition_id);

/*
 * What the archived rows counted, per resource, so that waitlist_check()
 * balances a resource's units and the metrics' counters (resource_stats)
 * keep what was archived, without reading the archive.
 */
CREATE TABLE waitlist_archive.resource_totals (
    resource_id      text   NOT NULL,
    entries          bigint NOT NULL DEFAULT 0,
    offers_accepted  bigint NOT NULL DEFAULT 0,
    offers_failed    bigint NOT NULL DEFAULT 0,
    events           bigint NOT NULL DEFAULT 0,
    units_released   bigint NOT NULL DEFAULT 0,
    offers_declined  bigint NOT NULL DEFAULT 0,
    offers_expired   bigint NOT NULL DEFAULT 0,
    offers_expired_unseen bigint NOT NULL DEFAULT 0,
    units_accepted   bigint NOT NULL DEFAULT 0,
    units_failed     bigint NOT NULL DEFAULT 0,
    CONSTRAINT resource_totals_pkey PRIMARY KEY (resource_id)
);
COMMENT ON TABLE waitlist_archive.resource_totals IS 'per resource: archived entries, offers by outcome (ACCEPTED, FAILED, DECLINED, EXPIRED, EXPIRED unseen), the units of the ACCEPTED and FAILED ones (a party''s offer holds several), and processed capacity events with their units';

/* The archived audit trail is append-only too; rows come only from waitlist_archive(). */
CREATE TRIGGER transition_no_update_delete
    BEFORE UPDATE OR DELETE ON waitlist_archive.transition
    FOR EACH ROW EXECUTE FUNCTION waitlist.transition_append_only('archive');
CREATE TRIGGER transition_no_truncate
    BEFORE TRUNCATE ON waitlist_archive.transition
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.transition_append_only('archive');
CREATE TRIGGER transition_insert_guard
    BEFORE INSERT ON waitlist_archive.transition
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.transition_insert_guard('archive');
ALTER TABLE waitlist_archive.transition ENABLE ALWAYS TRIGGER transition_no_update_delete;
ALTER TABLE waitlist_archive.transition ENABLE ALWAYS TRIGGER transition_no_truncate;
ALTER TABLE waitlist_archive.transition ENABLE ALWAYS TRIGGER transition_insert_guard;

/* Hot and archived rows together, for history and explanations. */
CREATE VIEW waitlist_archive.transition_all AS
SELECT t.*, NULL::pg_catalog.timestamptz AS archived_at FROM waitlist.transition t
UNION ALL
SELECT a.* FROM waitlist_archive.transition a;
COMMENT ON VIEW waitlist_archive.transition_all IS 'every transition, hot and archived (archived_at NULL while hot)';
CREATE VIEW waitlist_archive.entry_all AS
SELECT e.*, NULL::pg_catalog.timestamptz AS archived_at FROM waitlist.entry e
UNION ALL
SELECT a.* FROM waitlist_archive.entry a;
COMMENT ON VIEW waitlist_archive.entry_all IS 'every entry, hot and archived (archived_at NULL while hot)';
CREATE VIEW waitlist_archive.offer_all AS
SELECT o.*, NULL::pg_catalog.timestamptz AS archived_at FROM waitlist.offer o
UNION ALL
SELECT a.* FROM waitlist_archive.offer a;
COMMENT ON VIEW waitlist_archive.offer_all IS 'every offer, hot and archived (archived_at NULL while hot)';

SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.entry', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.offer', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.accept_request', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.offer_extension', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.capacity_event', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.transition', '');
SELECT pg_catalog.pg_extension_config_dump('waitlist_archive.resource_totals', '');

/*
 * What waitlist_archive() looks rows up by: terminal entries by age, an
 * entry's offers (also what the foreign key checks when an entry is
 * deleted: without it every archived entry scanned waitlist.offer), and
 * processed events by age.  None holds a column the claim or promotion
 * UPDATEs change without also changing state.
 */
CREATE INDEX entry_terminal_idx ON waitlist.entry (updated_at)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTED', 'DECLINED', 'EXPIRED', 'CANCELLED']);
CREATE INDEX offer_entry_idx ON waitlist.offer (resource_id, entry_id);
CREATE INDEX capacity_event_processed_idx ON waitlist.capacity_event (processed_at)
    WHERE state OPERATOR(pg_catalog.=) 'PROCESSED';

/*
 * An event id counts once per resource also after its event was archived:
 * a repeated delivery is skipped here, before ON CONFLICT would look only
 * at the hot table.  The hot row is locked first: while it is there, the
 * archive passes over it (SKIP LOCKED) and ON CONFLICT finds it; while an
 * archive is moving it, the lock waits for that to commit, and the next
 * statement (a new snapshot) finds the archived row.  Not ALWAYS: a
 * restore brings its events as they were.
 */
CREATE FUNCTION waitlist.capacity_event_archived()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM FROM waitlist.capacity_event h
    WHERE h.resource_id OPERATOR(pg_catalog.=) NEW.resource_id
      AND h.event_id OPERATOR(pg_catalog.=) NEW.event_id
    FOR KEY SHARE;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM waitlist_archive.capacity_event a
               WHERE a.resource_id OPERATOR(pg_catalog.=) NEW.resource_id
                 AND a.event_id OPERATOR(pg_catalog.=) NEW.event_id) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION waitlist.capacity_event_archived() FROM PUBLIC;
CREATE TRIGGER capacity_event_archived
    BEFORE INSERT ON waitlist.capacity_event
    FOR EACH ROW EXECUTE FUNCTION waitlist.capacity_event_archived();

CREATE FUNCTION waitlist_archive(older_than interval DEFAULT '30 days',
                                 batch integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'waitlist_archive'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_archive(interval, integer) IS 'moves up to batch terminal entries (with their offers, delivered or dead outbox rows, accept requests and transitions) and up to batch processed capacity events, last changed more than older_than ago, to schema waitlist_archive; returns the number of entries and events moved, 0 when nothing is left';

/*
 * A function runs in its caller's transaction; this procedure commits
 * after each batch, so a large backlog never holds its locks or its
 * snapshot long.  No SET clause (a procedure with one cannot commit):
 * every name and operator is qualified instead.
 */
CREATE PROCEDURE waitlist_archive_all(older_than interval DEFAULT '30 days',
                                      batch integer DEFAULT 10000)
LANGUAGE plpgsql
AS $$
DECLARE
    moved pg_catalog.int8;
BEGIN
    LOOP
        moved := @extschema@.waitlist_archive(older_than, batch);
        EXIT WHEN moved OPERATOR(pg_catalog.=) 0;
        COMMIT;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE waitlist_archive_all(interval, integer) IS 'calls waitlist_archive() until nothing is left, committing after each batch';

CREATE FUNCTION waitlist_schedule_archive(schedule text DEFAULT '17 3 * * *',
                                          older_than interval DEFAULT '30 days')
RETURNS bigint
AS 'MODULE_PATHNAME', 'waitlist_schedule_archive'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_schedule_archive(text, interval) IS 'registers CALL waitlist_archive_all(older_than) as this database''s pg_cron job "waitlist-archive"; returns the job id';

CREATE FUNCTION waitlist_unschedule_archive()
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_unschedule_archive'
LANGUAGE C;
COMMENT ON FUNCTION waitlist_unschedule_archive() IS 'removes this database''s pg_cron job "waitlist-archive" (its owner, database and command), no other job of that name; false if there was none';

REVOKE ALL ON FUNCTION waitlist_archive(interval, integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE waitlist_archive_all(interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_schedule_archive(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_unschedule_archive() FROM PUBLIC;

/*
 * Storage of the hot tables.  The outbox claim (lease columns only) and
 * marking an offer seen change no indexed column, so they are HOT updates
 * when the page has room.  A relay claims the oldest rows, which share
 * pages, in one transaction, so a page needs room for a new version of
 * each of its rows: the outbox keeps half of each page free (claims were
 * 40 % HOT at fillfactor 70, 94 % at 50; test/t/017_hot_updates.pl).
 * State changes of entries and offers, and free_units changes of a
 * resource, change columns of partial index predicates and can never be
 * HOT; fillfactor does not help them, vacuum does.  The queues (outbox, capacity_event) and the
 * line (entry, offer) are vacuumed after 2 % of their rows changed, not
 * 20 %, so dead tuples and archived rows' space are reused soon; the
 * append-mostly log is vacuumed after inserts too, keeping its visibility
 * map current for index-only scans.
 */
ALTER TABLE waitlist.outbox SET (fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE waitlist.entry SET (
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE waitlist.offer SET (
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE waitlist.capacity_event SET (
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE waitlist.accept_request SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE waitlist.transition SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_insert_scale_factor = 0.05);

/*
 * waitlist_check() counts what was archived: the units of archived
 * ACCEPTED and FAILED offers and of archived processed events, from
 * waitlist_archive.resource_totals.  Every other invariant reads entries,
 * offers, outbox rows and transitions that move together, so an archived
 * entry takes all it is checked against with it.
 */
CREATE OR REPLACE FUNCTION waitlist_check(for_resource text DEFAULT NULL,
                               fifo_window interval DEFAULT '1 hour',
                               OUT invariant text,
                               OUT resource_id text,
                               OUT entity text,
                               OUT entity_id bigint,
                               OUT detail text)
RETURNS SETOF record
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the C API pins these for its own SQL (src/api.c): a caller's TimeZone
-- moved every wave's end computed here (a day is 23 hours across a DST
-- change), so throttled resources were reported idle, or idle ones throttled
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres'
SET standard_conforming_strings = on
SET transform_null_equals = off
SET array_nulls = on
AS $check$
#variable_conflict use_column
DECLARE
    resources pg_catalog.text[];
    one_resource pg_catalog.text;
    exact_fifo boolean := pg_catalog.current_setting('track_commit_timestamp')::boolean;
    -- how long a commit may stay invisible after its timestamp (see fifo_order)
    commit_in_flight interval := interval '100 milliseconds';
BEGIN
    -- on Citus: one resource at a time, on its node (waitlist.check_resource())
    -- distributed: begin
    IF waitlist.tables_distributed() THEN
        FOR one_resource IN
            SELECT r.resource_id FROM waitlist.resource r
            WHERE for_resource IS NULL OR r.resource_id OPERATOR(pg_catalog.=) for_resource
            ORDER BY r.resource_id
        LOOP
            RETURN QUERY SELECT * FROM waitlist.check_resource(one_resource, fifo_window);
        END LOOP;
        RETURN;
    END IF;
    -- distributed: end
    IF for_resource IS NULL THEN
        SELECT pg_catalog.array_agg(r.resource_id) INTO resources FROM waitlist.resource r;
    ELSE
        resources := ARRAY[for_resource];
    END IF;
    resources := coalesce(resources, '{}');

    -- capacity: every released unit is free, held, consumed or retired
    RETURN QUERY
    SELECT 'capacity_conserved', r.resource_id, 'resource', NULL::bigint,
           pg_catalog.format('released %s <> free %s + open %s + accepted %s + failed %s + returned %s',
                             r.units_released, r.free_units, c.open, c.accepted, c.failed, r.units_returned)
    FROM waitlist.resource r
    CROSS JOIN LATERAL (
        -- held: open, and accepted with the booking service booking (ACCEPTING);
        -- an offer holds its party's units, the offers of a fanned-out unit one
        SELECT coalesce(pg_catalog.sum(o.units) FILTER (WHERE o.unit_id IS NULL
                          AND o.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING'])), 0)
                 OPERATOR(pg_catalog.+) pg_catalog.count(DISTINCT o.unit_id)
                   FILTER (WHERE o.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING'])) AS open,
               coalesce(pg_catalog.sum(o.units) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'ACCEPTED'), 0)
                 OPERATOR(pg_catalog.+) coalesce((SELECT a.units_accepted FROM waitlist_archive.resource_totals a
                                                  WHERE a.resource_id OPERATOR(pg_catalog.=) r.resource_id), 0) AS accepted,
               coalesce(pg_catalog.sum(o.units) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'FAILED'), 0)
                 OPERATOR(pg_catalog.+) coalesce((SELECT a.units_failed FROM waitlist_archive.resource_totals a
                                                  WHERE a.resource_id OPERATOR(pg_catalog.=) r.resource_id), 0) AS failed
        FROM waitlist.offer o WHERE o.resource_id OPERATOR(pg_catalog.=) r.resource_id) c
    WHERE r.resource_id OPERATOR(pg_catalog.=) ANY (resources)
      AND (r.units_released OPERATOR(pg_catalog.<>) (r.free_units OPERATOR(pg_catalog.+) c.open
               OPERATOR(pg_catalog.+) c.accepted OPERATOR(pg_catalog.+) c.failed
               OPERATOR(pg_catalog.+) r.units_returned)
           OR r.free_units OPERATOR(pg_catalog.<) 0);

    -- every released unit was counted once: processed events add up
    RETURN QUERY
    SELECT 'events_accounted', r.resource_id, 'resource', NULL::bigint,
           pg_catalog.format('units_released %s <> processed events %s', r.units_released, e.units)
    FROM waitlist.resource r
    CROSS JOIN LATERAL (
        SELECT coalesce(pg_catalog.sum(ev.quantity), 0)
                 OPERATOR(pg_catalog.+) coalesce((SELECT a.units_released FROM waitlist_archive.resource_totals a
                                                  WHERE a.resource_id OPERATOR(pg_catalog.=) r.resource_id), 0) AS units
        FROM waitlist.capacity_event ev
        WHERE ev.resource_id OPERATOR(pg_catalog.=) r.resource_id AND ev.state OPERATOR(pg_catalog.=) 'PROCESSED') e
    WHERE r.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND r.units_released OPERATOR(pg_catalog.<>) e.units;

    RETURN QUERY
    SELECT 'event_not_dead', ev.resource_id, 'capacity_event', NULL::bigint,
           pg_catalog.format('event %s is DEAD after %s attempts: %s', ev.event_id, ev.attempts, ev.last_error)
    FROM waitlist.capacity_event ev
    WHERE ev.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND ev.state OPERATOR(pg_catalog.=) 'DEAD';

    -- offers and entries agree
    RETURN QUERY
    SELECT 'one_open_offer_per_entry', o.resource_id, 'entry', o.entry_id,
           pg_catalog.format('%s open offers', pg_catalog.count(*))
    FROM waitlist.offer o
    WHERE o.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND o.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING'])
    GROUP BY o.resource_id, o.entry_id HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1;

    RETURN QUERY
    SELECT 'offered_entry_has_open_offer', e.resource_id, 'entry', e.entry_id,
           'entry is OFFERED without an open offer'
    FROM waitlist.entry e
    WHERE e.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND e.state OPERATOR(pg_catalog.=) 'OFFERED'
      AND NOT EXISTS (SELECT 1 FROM waitlist.offer o
                      WHERE o.resource_id OPERATOR(pg_catalog.=) e.resource_id AND o.entry_id OPERATOR(pg_catalog.=) e.entry_id AND o.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING']));

    RETURN QUERY
    SELECT 'offer_matches_entry', o.resource_id, 'offer', o.offer_id,
           pg_catalog.format('offer is %s but its entry %s is %s', o.state, e.entry_id, e.state)
    FROM waitlist.offer o
    JOIN waitlist.entry e ON e.resource_id OPERATOR(pg_catalog.=) o.resource_id AND e.entry_id OPERATOR(pg_catalog.=) o.entry_id
    WHERE o.resource_id OPERATOR(pg_catalog.=) ANY (resources)
      AND ((o.state OPERATOR(pg_catalog.=) ANY (ARRAY['OPEN', 'ACCEPTING']) AND e.state OPERATOR(pg_catalog.<>) 'OFFERED')
        OR (o.state OPERATOR(pg_catalog.=) 'ACCEPTED' AND e.state OPERATOR(pg_catalog.<>) 'ACCEPTED')
        OR (o.state OPERATOR(pg_catalog.=) 'DECLINED' AND e.state OPERATOR(pg_catalog.<>) 'DECLINED')
        OR (o.state OPERATOR(pg_catalog.=) 'EXPIRED' AND e.state OPERATOR(pg_catalog.<>) 'EXPIRED')
        OR (o.state OPERATOR(pg_catalog.=) 'REVOKED' AND e.state OPERATOR(pg_catalog.<>) 'CANCELLED'
            -- the other offers of a fanned-out unit someone took: their fans went back in line
            AND NOT (o.unit_id IS NOT NULL
                     AND EXISTS (SELECT 1 FROM waitlist.offer t
                                 WHERE t.resource_id OPERATOR(pg_catalog.=) o.resource_id
                                   AND t.unit_id OPERATOR(pg_catalog.=) o.unit_id
                                   AND t.state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTING', 'ACCEPTED', 'FAILED'])))));

    -- an offer holds its party's units; a fanned-out unit is taken once
    RETURN QUERY
    SELECT 'offer_holds_party', o.resource_id, 'offer', o.offer_id,
           pg_catalog.format('offer holds %s units for a party of %s', o.units, e.quantity)
    FROM waitlist.offer o
    JOIN waitlist.entry e ON e.resource_id OPERATOR(pg_catalog.=) o.resource_id AND e.entry_id OPERATOR(pg_catalog.=) o.entry_id
    WHERE o.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND o.units OPERATOR(pg_catalog.<>) e.quantity;

    RETURN QUERY
    SELECT 'unit_taken_once', o.resource_id, 'offer', pg_catalog.min(o.offer_id),
           pg_catalog.format('fanned-out unit %s is held by %s offers and taken by %s',
                             o.unit_id,
                             pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'OPEN'),
                             pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTING', 'ACCEPTED', 'FAILED'])))
    FROM waitlist.offer o
    WHERE o.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND o.unit_id IS NOT NULL
    GROUP BY o.resource_id, o.unit_id
    HAVING pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTING', 'ACCEPTED', 'FAILED'])) OPERATOR(pg_catalog.>) 1
        OR (pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) ANY (ARRAY['ACCEPTING', 'ACCEPTED', 'FAILED'])) OPERATOR(pg_catalog.>) 0
            AND pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'OPEN') OPERATOR(pg_catalog.>) 0);

    RETURN QUERY
    SELECT 'one_active_entry_per_user', e.resource_id, 'entry', pg_catalog.min(e.entry_id),
           pg_catalog.format('user %s has %s active entries', e.user_id, pg_catalog.count(*))
    FROM waitlist.entry e
    WHERE e.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND e.state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED'])
    GROUP BY e.resource_id, e.user_id HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1;

    -- the audit trail explains every current state
    RETURN QUERY
    WITH states AS (
        -- an entry is created WAITING, or PENDING where places are confirmed
        SELECT 'entry'::pg_catalog.text AS entity, e.resource_id, e.entry_id AS entity_id, e.state,
               ARRAY['WAITING', 'PENDING']::pg_catalog.text[] AS initial
        FROM waitlist.entry e WHERE e.resource_id OPERATOR(pg_catalog.=) ANY (resources)
        UNION ALL
        SELECT 'offer', o.resource_id, o.offer_id, o.state, ARRAY['OPEN']
        FROM waitlist.offer o WHERE o.resource_id OPERATOR(pg_catalog.=) ANY (resources)
    ), chains AS (
        SELECT s.*, t.transition_id, t.from_state, t.to_state,
               pg_catalog.lag(t.to_state) OVER w AS previous_to,
               pg_catalog.row_number() OVER w AS n,
               pg_catalog.row_number() OVER (PARTITION BY s.entity, s.resource_id, s.entity_id
                                             ORDER BY t.transition_id DESC) AS n_from_end
        FROM states s
        LEFT JOIN waitlist.transition t
          ON t.resource_id OPERATOR(pg_catalog.=) s.resource_id AND t.entity OPERATOR(pg_catalog.=) s.entity AND t.entity_id OPERATOR(pg_catalog.=) s.entity_id
        WINDOW w AS (PARTITION BY s.entity, s.resource_id, s.entity_id ORDER BY t.transition_id)
    )
    SELECT v.invariant, c.resource_id, c.entity, c.entity_id, v.detail
    FROM chains c
    CROSS JOIN LATERAL (VALUES
        ('state_has_audit_trail', c.transition_id IS NULL,
         pg_catalog.format('%s has no transition rows', c.state)),
        ('audit_starts_at_initial_state',
         c.n OPERATOR(pg_catalog.=) 1 AND c.transition_id IS NOT NULL AND (c.from_state IS NOT NULL OR NOT c.to_state OPERATOR(pg_catalog.=) ANY (c.initial)),
         pg_catalog.format('first transition is %s -> %s', coalesce(c.from_state, 'NULL'), c.to_state)),
        ('audit_chain_continuous',
         c.n OPERATOR(pg_catalog.>) 1 AND ((c.from_state IS NULL) OPERATOR(pg_catalog.<>) (c.previous_to IS NULL) OR c.from_state OPERATOR(pg_catalog.<>) c.previous_to),
         pg_catalog.format('transition %s starts at %s after %s', c.transition_id, c.from_state, c.previous_to)),
        ('state_matches_audit',
         c.n_from_end OPERATOR(pg_catalog.=) 1 AND c.transition_id IS NOT NULL AND c.to_state OPERATOR(pg_catalog.<>) c.state,
         pg_catalog.format('state %s, last transition to %s', c.state, c.to_state))
    ) AS v(invariant, violated, detail)
    WHERE v.violated;

    -- every offer was handed to the notifier
    RETURN QUERY
    SELECT 'offer_has_outbox_row', o.resource_id, 'offer', o.offer_id, 'no offer_created outbox row'
    FROM waitlist.offer o
    WHERE o.resource_id OPERATOR(pg_catalog.=) ANY (resources)
      AND NOT EXISTS (SELECT 1 FROM waitlist.outbox b
                      WHERE b.resource_id OPERATOR(pg_catalog.=) o.resource_id AND b.offer_id OPERATOR(pg_catalog.=) o.offer_id
                        AND b.event_type OPERATOR(pg_catalog.=) 'offer_created');

    -- liveness: no unit sits free while someone waits
    RETURN QUERY
    SELECT 'idle_unit_while_waiting', r.resource_id, 'resource', NULL::bigint,
           pg_catalog.format('%s free units and %s waiting', r.free_units,
                             (SELECT pg_catalog.count(*) FROM waitlist.entry e
                              WHERE e.resource_id OPERATOR(pg_catalog.=) r.resource_id AND e.state OPERATOR(pg_catalog.=) 'WAITING'))
    FROM waitlist.resource r
    WHERE r.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND r.free_units OPERATOR(pg_catalog.>) 0
      -- a resource waiting for its next wave is throttled, not idle
      AND NOT (r.wave_size IS NOT NULL AND r.wave_offers OPERATOR(pg_catalog.>=) r.wave_size
               AND (r.wave_started_at OPERATOR(pg_catalog.+) r.wave_interval) OPERATOR(pg_catalog.>) pg_catalog.now())
      -- a party that does not fit waits: strictly at the head, or any party with skip_to_fit
      AND EXISTS (SELECT 1 FROM waitlist.entry e
                  WHERE e.resource_id OPERATOR(pg_catalog.=) r.resource_id AND e.state OPERATOR(pg_catalog.=) 'WAITING'
                    AND e.quantity OPERATOR(pg_catalog.<=) r.free_units
                    AND (r.party_policy OPERATOR(pg_catalog.=) 'skip_to_fit'
                         OR NOT EXISTS (SELECT 1 FROM waitlist.entry h
                                        WHERE h.resource_id OPERATOR(pg_catalog.=) e.resource_id
                                          AND h.state OPERATOR(pg_catalog.=) 'WAITING'
                                          AND h.quantity OPERATOR(pg_catalog.>) r.free_units
                                          AND (h.rank_key OPERATOR(pg_catalog.>) e.rank_key
                                               OR (h.rank_key OPERATOR(pg_catalog.=) e.rank_key
                                                   AND h.seq OPERATOR(pg_catalog.<) e.seq)))));

    /*
     * FIFO fairness: no offer went to an entry while an entry ahead of it in
     * line (rank_key DESC, seq: aged priority, then arrival) was waiting and visible to the promotion:
     * the waiter's move to WAITING committed before the promoting
     * transaction began, and its move out of WAITING began after that
     * transaction committed.  A transition row of the waiter written by the
     * promoting transaction itself would record a rule that allowed it.
     *
     * PostgreSQL records a commit's timestamp before the transaction becomes
     * visible to others, so a waiter whose join was still committing when
     * the promotion took its snapshot can carry a commit time just before
     * the promotion began, though the promotion could not see it (a
     * pass-over README's Guarantees name as not guaranteed).  A commit time
     * within commit_in_flight of the promotion's start is therefore given
     * the benefit of the doubt.
     *
     * Promotions made within fifo_window are checked, each against the last
     * in line it offered to.  The waiters looked at are those still waiting
     * ahead of it (ranges of the line index) and those that left WAITING
     * after the promotion began, so the cost follows recent activity (the
     * number of promotions times the leaves in the window), not the length
     * of the history.  A promotion made before the resource's ordering rules
     * last changed was decided under other rules (the line was ranked again
     * since): it is not checked against today's ranks.
     */
    RETURN QUERY
    WITH made AS (
        -- each offer and its entry by their keys (OFFSET 0): with the statistics of a
        -- table that just grew, a join could pair every offer with every entry
        SELECT t.resource_id, t.entity_id AS offer_id, e.entry_id, e.rank_key, e.seq, e.quantity,
               t.at AS began, t.transaction_id
        FROM waitlist.transition t
        CROSS JOIN LATERAL (SELECT o.entry_id FROM waitlist.offer o
                            WHERE o.resource_id OPERATOR(pg_catalog.=) t.resource_id
                              AND o.offer_id OPERATOR(pg_catalog.=) t.entity_id OFFSET 0) o
        CROSS JOIN LATERAL (SELECT e.entry_id, e.rank_key, e.seq, e.quantity FROM waitlist.entry e
                            WHERE e.resource_id OPERATOR(pg_catalog.=) t.resource_id
                              AND e.entry_id OPERATOR(pg_catalog.=) o.entry_id OFFSET 0) e
        WHERE t.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND t.entity OPERATOR(pg_catalog.=) 'offer' AND t.from_state IS NULL
          AND t.at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) fifo_window)
    ), promotions AS MATERIALIZED (
        -- one row per promoting transaction, with the last in line it offered to
        SELECT m.resource_id, m.transaction_id, pg_catalog.min(m.began) AS began,
               CASE WHEN exact_fifo
                    THEN pg_catalog.pg_xact_commit_timestamp(m.transaction_id::pg_catalog.text::pg_catalog.xid) END AS committed,
               (pg_catalog.array_agg(m.offer_id ORDER BY m.rank_key, m.seq DESC))[1] AS offer_id,
               (pg_catalog.array_agg(m.entry_id ORDER BY m.rank_key, m.seq DESC))[1] AS entry_id,
               (pg_catalog.array_agg(m.rank_key ORDER BY m.rank_key, m.seq DESC))[1] AS rank_key,
               (pg_catalog.array_agg(m.seq ORDER BY m.rank_key, m.seq DESC))[1] AS seq,
               (pg_catalog.array_agg(m.quantity ORDER BY m.rank_key, m.seq DESC))[1] AS quantity
        FROM made m
        GROUP BY m.resource_id, m.transaction_id
    ), recently_left AS MATERIALIZED (
        SELECT t.resource_id, t.entity_id AS entry_id, t.at AS left_at
        FROM waitlist.transition t
        WHERE t.resource_id OPERATOR(pg_catalog.=) ANY (resources) AND t.entity OPERATOR(pg_catalog.=) 'entry' AND t.from_state OPERATOR(pg_catalog.=) 'WAITING'
          AND t.at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) fifo_window)
    ), candidates AS (
        SELECT p.*, w.entry_id AS ahead_id, w.quantity AS ahead_quantity
        FROM promotions p
        CROSS JOIN LATERAL (
            -- two ranges of the line index: ranked higher, and ranked the same but earlier
            SELECT a.entry_id, a.quantity FROM waitlist.entry a
            WHERE a.resource_id OPERATOR(pg_catalog.=) p.resource_id AND a.state OPERATOR(pg_catalog.=) 'WAITING' AND a.rank_key OPERATOR(pg_catalog.>) p.rank_key
            UNION
            SELECT a.entry_id, a.quantity FROM waitlist.entry a
            WHERE a.resource_id OPERATOR(pg_catalog.=) p.resource_id AND a.state OPERATOR(pg_catalog.=) 'WAITING'
              AND a.rank_key OPERATOR(pg_catalog.=) p.rank_key AND a.seq OPERATOR(pg_catalog.<) p.seq
            UNION
            SELECT a.entry_id, a.quantity FROM recently_left r
            JOIN waitlist.entry a ON a.resource_id OPERATOR(pg_catalog.=) r.resource_id AND a.entry_id OPERATOR(pg_catalog.=) r.entry_id
            WHERE r.resource_id OPERATOR(pg_catalog.=) p.resource_id AND r.left_at OPERATOR(pg_catalog.>) p.began
              AND (a.rank_key OPERATOR(pg_catalog.>) p.rank_key OR (a.rank_key OPERATOR(pg_catalog.=) p.rank_key AND a.seq OPERATOR(pg_catalog.<) p.seq))
        ) w
        WHERE NOT EXISTS (SELECT 1 FROM waitlist.transition rc
                          WHERE rc.resource_id OPERATOR(pg_catalog.=) p.resource_id
                            AND rc.entity OPERATOR(pg_catalog.=) 'resource'
                            AND rc.at OPERATOR(pg_catalog.>=) p.began)
          -- with skip_to_fit a party that did not fit is passed over by smaller ones
          AND NOT (w.quantity OPERATOR(pg_catalog.>) p.quantity
                   AND EXISTS (SELECT 1 FROM waitlist.resource pr
                               WHERE pr.resource_id OPERATOR(pg_catalog.=) p.resource_id
                                 AND pr.party_policy OPERATOR(pg_catalog.=) 'skip_to_fit'))
    )
    SELECT 'fifo_order', c.resource_id, 'offer', c.offer_id,
           pg_catalog.format('offered to entry %s while entry %s, ahead of it, was waiting',
                             c.entry_id, c.ahead_id)
    FROM candidates c
    CROSS JOIN LATERAL (
        -- the waiter's last move to WAITING before the promotion, and its next move
        SELECT t.at AS began, t.transaction_id,
               (SELECT n.at FROM waitlist.transition n
                WHERE n.resource_id OPERATOR(pg_catalog.=) t.resource_id AND n.entity OPERATOR(pg_catalog.=) 'entry' AND n.entity_id OPERATOR(pg_catalog.=) t.entity_id
                  AND n.transition_id OPERATOR(pg_catalog.>) t.transition_id
                ORDER BY n.transition_id LIMIT 1) AS left_at
        FROM waitlist.transition t
        WHERE t.resource_id OPERATOR(pg_catalog.=) c.resource_id AND t.entity OPERATOR(pg_catalog.=) 'entry' AND t.entity_id OPERATOR(pg_catalog.=) c.ahead_id
          AND t.to_state OPERATOR(pg_catalog.=) 'WAITING' AND t.at OPERATOR(pg_catalog.<=) c.began
        ORDER BY t.transition_id DESC LIMIT 1
    ) w
    WHERE CASE WHEN exact_fifo AND c.committed IS NOT NULL
                    AND pg_catalog.pg_xact_commit_timestamp(w.transaction_id::pg_catalog.text::pg_catalog.xid) IS NOT NULL
               THEN pg_catalog.pg_xact_commit_timestamp(w.transaction_id::pg_catalog.text::pg_catalog.xid)
                        OPERATOR(pg_catalog.<) (c.began OPERATOR(pg_catalog.-) commit_in_flight)
                    AND (w.left_at IS NULL OR w.left_at OPERATOR(pg_catalog.>) c.committed)
               ELSE (w.began OPERATOR(pg_catalog.+) interval '1 second') OPERATOR(pg_catalog.<) c.began
                    AND (w.left_at IS NULL OR w.left_at OPERATOR(pg_catalog.>) (c.began OPERATOR(pg_catalog.+) interval '1 second'))
          END
      AND NOT EXISTS (SELECT 1 FROM waitlist.transition x
                      WHERE x.resource_id OPERATOR(pg_catalog.=) c.resource_id AND x.entity OPERATOR(pg_catalog.=) 'entry'
                        AND x.entity_id OPERATOR(pg_catalog.=) c.ahead_id AND x.transaction_id OPERATOR(pg_catalog.=) c.transaction_id);
END
$check$;

/* ---- history and explain ---- */

/*
 * Support tooling: what happened to one fan's entry, and why others were
 * offered a place first, rebuilt from the audit trail, hot and archived
 * (so this section follows the archive's).  Every table is read through
 * the entry's resource_id.  A place in line at a past instant is
 * reconstructed: the entries of the resource whose last transition before
 * that instant left them WAITING, ranked ahead under the ordering rules in
 * force then (the rules a resource transition recorded, or, before the
 * first change, those it changed from).
 */

-- a span of time as an agent reads it out: in minutes, hours or days, rounded
CREATE FUNCTION waitlist.spoken_interval(span interval)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $spoken$
    SELECT CASE WHEN u.minutes OPERATOR(pg_catalog.<) 1 THEN 'less than a minute'
                ELSE pg_catalog.format('%s %s%s', u.n, u.unit,
                                       CASE WHEN u.n OPERATOR(pg_catalog.=) 1 THEN '' ELSE 's' END)
           END
    FROM (SELECT pg_catalog.abs(pg_catalog.date_part('epoch', span)) AS seconds) s
    CROSS JOIN LATERAL (
        SELECT pg_catalog.round((s.seconds OPERATOR(pg_catalog./) 60)::numeric) AS minutes,
               pg_catalog.round((s.seconds OPERATOR(pg_catalog./) 3600)::numeric) AS hours,
               pg_catalog.round((s.seconds OPERATOR(pg_catalog./) 86400)::numeric) AS days
    ) r
    CROSS JOIN LATERAL (
        SELECT r.minutes,
               CASE WHEN r.minutes OPERATOR(pg_catalog.<) 60 THEN r.minutes
                    WHEN r.hours OPERATOR(pg_catalog.<) 48 THEN r.hours ELSE r.days END AS n,
               CASE WHEN r.minutes OPERATOR(pg_catalog.<) 60 THEN 'minute'
                    WHEN r.hours OPERATOR(pg_catalog.<) 48 THEN 'hour' ELSE 'day' END AS unit
    ) u
$spoken$;

-- an interval of a rule, exactly: "1 hour 30 minutes"
CREATE FUNCTION waitlist.spoken_rule_interval(span interval)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $spoken$
    SELECT pg_catalog.string_agg(pg_catalog.format('%s %s%s', pg_catalog.trim_scale(v.n), v.unit,
                                                   CASE WHEN v.n OPERATOR(pg_catalog.=) 1 THEN '' ELSE 's' END),
                                 ' ' ORDER BY v.ord)
    FROM (SELECT pg_catalog.justify_hours(span) AS j) s
    CROSS JOIN LATERAL (VALUES (1, pg_catalog.date_part('month', s.j)::numeric, 'month'),
                               (2, pg_catalog.date_part('day', s.j)::numeric, 'day'),
                               (3, pg_catalog.date_part('hour', s.j)::numeric, 'hour'),
                               (4, pg_catalog.date_part('minute', s.j)::numeric, 'minute'),
                               (5, pg_catalog.date_part('second', s.j)::numeric, 'second')) AS v(ord, n, unit)
    WHERE v.n OPERATOR(pg_catalog.<>) 0
$spoken$;

/*
 * The ordering rules of a resource in force at an instant.  known is false
 * where the log does not say them: an aged version the resource was
 * created with and has changed since (its interval is not recorded).
 */
CREATE FUNCTION waitlist.rules_at(resource text, instant timestamptz,
                                  OUT version text, OUT aging interval,
                                  OUT place_from text, OUT known boolean)
RETURNS record
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $rules$
DECLARE
    changed pg_catalog.record;
    rules pg_catalog.text[];
BEGIN
    SELECT t.to_state, t.reason INTO changed
    FROM waitlist_archive.transition_all t
    WHERE t.resource_id OPERATOR(pg_catalog.=) resource AND t.entity OPERATOR(pg_catalog.=) 'resource'
      AND t.at OPERATOR(pg_catalog.<=) instant
    ORDER BY t.transition_id DESC LIMIT 1;
    IF FOUND THEN
        version := changed.to_state;
        -- the reason src/resource.c writes
        rules := pg_catalog.regexp_match(changed.reason,
                     'aging_interval (.*), confirm_within .*, places counted from the (join|confirm)(, parties [a-z_]+)?$');
        known := rules IS NOT NULL;
        IF known THEN
            aging := CASE WHEN rules[1] OPERATOR(pg_catalog.=) 'none' THEN NULL ELSE rules[1]::interval END;
            place_from := rules[2];
        END IF;
        RETURN;
    END IF;
    SELECT t.from_state INTO version
    FROM waitlist_archive.transition_all t
    WHERE t.resource_id OPERATOR(pg_catalog.=) resource AND t.entity OPERATOR(pg_catalog.=) 'resource'
    ORDER BY t.transition_id LIMIT 1;
    IF FOUND THEN
        -- without aging the stored seq is the order, whatever place_from said
        known := pg_catalog.starts_with(version, 'priority-fifo/');
        RETURN;
    END IF;
    SELECT r.rule_version, r.aging_interval, r.confirm_place_from, true
    INTO version, aging, place_from, known
    FROM waitlist.resource r WHERE r.resource_id OPERATOR(pg_catalog.=) resource;
END
$rules$;

/*
 * An entry's rank under the given rules (higher first, then seq): its aged
 * priority less (instant / aging_interval), as src/transition.c ranks; the
 * stored rank_key where the rules are not known.
 */
CREATE FUNCTION waitlist.rank_under(priority integer, joined_at timestamptz,
                                    confirmed_at timestamptz, rank_key double precision,
                                    aging interval, place_from text, known boolean)
RETURNS double precision
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $rank$
    SELECT CASE WHEN NOT known THEN coalesce(rank_key, priority::double precision)
                WHEN aging IS NULL THEN priority::double precision
                -- OPERATOR() forms share one precedence: the division is parenthesized
                ELSE priority::double precision OPERATOR(pg_catalog.-)
                     (pg_catalog.date_part('epoch',
                          CASE WHEN place_from OPERATOR(pg_catalog.=) 'confirm' AND confirmed_at IS NOT NULL
                               THEN confirmed_at ELSE joined_at END)
                      OPERATOR(pg_catalog./) pg_catalog.date_part('epoch', aging))
           END
$rank$;

/*
 * The place in line of a waiting entry at an instant: one plus the other
 * entries of its resource that the log shows WAITING then (their last
 * transition before it went to WAITING), ranked ahead of it under the
 * rules in force.  Reads the resource's entry transitions up to the
 * instant, in the order of their index.
 */
CREATE FUNCTION waitlist.position_at(resource text, fan bigint, instant timestamptz)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $position$
DECLARE
    rules pg_catalog.record := waitlist.rules_at(resource, instant);
    me pg_catalog.record;
    my_rank double precision;
    ahead bigint;
BEGIN
    SELECT e.priority, e.joined_at, e.confirmed_at, e.rank_key, e.seq INTO me
    FROM waitlist_archive.entry_all e
    WHERE e.resource_id OPERATOR(pg_catalog.=) resource AND e.entry_id OPERATOR(pg_catalog.=) fan;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    my_rank := waitlist.rank_under(me.priority, me.joined_at, me.confirmed_at, me.rank_key,
                                   rules.aging, rules.place_from, rules.known);
    SELECT pg_catalog.count(*) INTO ahead
    FROM (SELECT DISTINCT ON (t.entity_id) t.entity_id, t.to_state
          FROM waitlist_archive.transition_all t
          WHERE t.resource_id OPERATOR(pg_catalog.=) resource AND t.entity OPERATOR(pg_catalog.=) 'entry'
            AND t.at OPERATOR(pg_catalog.<) instant AND t.entity_id OPERATOR(pg_catalog.<>) fan
          ORDER BY t.entity_id, t.transition_id DESC) s
    JOIN waitlist_archive.entry_all e
      ON e.resource_id OPERATOR(pg_catalog.=) resource AND e.entry_id OPERATOR(pg_catalog.=) s.entity_id
    CROSS JOIN LATERAL (
        SELECT waitlist.rank_under(e.priority, e.joined_at, e.confirmed_at, e.rank_key,
                                   rules.aging, rules.place_from, rules.known) AS rank
    ) k
    WHERE s.to_state OPERATOR(pg_catalog.=) 'WAITING'
      AND (k.rank OPERATOR(pg_catalog.>) my_rank
           OR (k.rank OPERATOR(pg_catalog.=) my_rank AND e.seq OPERATOR(pg_catalog.<) me.seq));
    RETURN ahead OPERATOR(pg_catalog.+) 1;
END
$position$;

/* The entry a support function explains, hot or archived; 22004, 42704. */
CREATE FUNCTION waitlist.explained_entry(entry bigint)
RETURNS waitlist_archive.entry_all
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $entry$
DECLARE
    found_entry waitlist_archive.entry_all;
BEGIN
    IF entry IS NULL THEN
        RAISE EXCEPTION 'entry_id must not be null'
            USING ERRCODE := 'null_value_not_allowed';
    END IF;
    SELECT e.* INTO found_entry FROM waitlist_archive.entry_all e
    WHERE e.entry_id OPERATOR(pg_catalog.=) entry LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'waitlist entry % does not exist', entry
            USING ERRCODE := 'undefined_object';
    END IF;
    RETURN found_entry;
END
$entry$;

CREATE FUNCTION waitlist_history(entry_id bigint)
RETURNS TABLE (at timestamptz, entity text, entity_id bigint, from_state text,
               to_state text, reason text, rule_version text, actor name,
               "position" bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $history$
#variable_conflict use_column
DECLARE
    fan waitlist_archive.entry_all := waitlist.explained_entry(waitlist_history.entry_id);
    offers bigint[];
    steps waitlist_archive.transition_all[];
BEGIN
    SELECT pg_catalog.array_agg(o.offer_id) INTO offers
    FROM waitlist_archive.offer_all o
    WHERE o.resource_id OPERATOR(pg_catalog.=) fan.resource_id
      AND o.entry_id OPERATOR(pg_catalog.=) fan.entry_id;
    /*
     * The transitions first, the places in line from them: on Citus, a
     * function that reads the tables may not run inside a query of a shard.
     */
    SELECT pg_catalog.array_agg(t ORDER BY t.transition_id) INTO steps
    FROM waitlist_archive.transition_all t
    WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id
      AND ((t.entity OPERATOR(pg_catalog.=) 'entry' AND t.entity_id OPERATOR(pg_catalog.=) fan.entry_id)
           OR (t.entity OPERATOR(pg_catalog.=) 'offer' AND t.entity_id OPERATOR(pg_catalog.=) ANY (coalesce(offers, '{}'))));
    -- the fan was waiting just before leaving WAITING, and when an offer was made to them
    RETURN QUERY
    SELECT t.at, t.entity, t.entity_id, t.from_state, t.to_state, t.reason, t.rule_version, t.actor,
           CASE WHEN (t.entity OPERATOR(pg_catalog.=) 'entry' AND t.from_state OPERATOR(pg_catalog.=) 'WAITING')
                     OR (t.entity OPERATOR(pg_catalog.=) 'offer' AND t.from_state IS NULL)
                THEN waitlist.position_at(fan.resource_id, fan.entry_id, t.at) END
    FROM pg_catalog.unnest(coalesce(steps, '{}')) WITH ORDINALITY AS t
    ORDER BY t.ordinality;
END
$history$;
COMMENT ON FUNCTION waitlist_history(bigint) IS 'every transition of an entry and of its offers, hot and archived, in order, with the fan''s place in line just before it (NULL where the fan was not waiting)';

/*
 * Why an offer went to someone who joined after the fan while the fan was
 * in line.  Ranked ahead under the rules then in force: aging, priority,
 * or the confirmation order.  Not ranked ahead: the promotion did not see
 * the fan waiting, by the reasoning of waitlist_check()'s fifo_order (the
 * fan's move to WAITING not yet visible, their move out of it begun before
 * the promotion committed), or the row was locked by a transaction that
 * left no trace (a leave rolled back), which promotions pass over.
 */
CREATE FUNCTION waitlist.overtake_reason(fan waitlist_archive.entry_all,
                                         fan_state text,
                                         other waitlist_archive.entry_all,
                                         offered_at timestamptz, offered_by xid8)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $reason$
DECLARE
    rules pg_catalog.record := waitlist.rules_at(fan.resource_id, offered_at);
    fan_rank double precision;
    other_rank double precision;
    exact_fifo boolean := pg_catalog.current_setting('track_commit_timestamp')::boolean;
    commit_in_flight interval := interval '100 milliseconds';
    committed pg_catalog.timestamptz;
    waited pg_catalog.record;
    moved pg_catalog.record;
    visible boolean;
BEGIN
    IF fan_state OPERATOR(pg_catalog.=) 'PENDING' THEN
        RETURN 'your place was not confirmed yet, and only confirmed places take part in offers';
    END IF;
    fan_rank := waitlist.rank_under(fan.priority, fan.joined_at, fan.confirmed_at, fan.rank_key,
                                    rules.aging, rules.place_from, rules.known);
    other_rank := waitlist.rank_under(other.priority, other.joined_at, other.confirmed_at, other.rank_key,
                                      rules.aging, rules.place_from, rules.known);
    IF other_rank OPERATOR(pg_catalog.>) fan_rank
       OR (other_rank OPERATOR(pg_catalog.=) fan_rank AND other.seq OPERATOR(pg_catalog.<) fan.seq) THEN
        IF rules.known AND rules.aging IS NOT NULL THEN
            RETURN pg_catalog.format('with aging (one priority point per %s waited) their aged priority was %s higher than yours',
                                     waitlist.spoken_rule_interval(rules.aging),
                                     pg_catalog.to_char(other_rank OPERATOR(pg_catalog.-) fan_rank, 'FM999999990.0')
                                       OPERATOR(pg_catalog.||) ' points');
        ELSIF NOT rules.known THEN
            RETURN pg_catalog.format('they ranked ahead of you under the ordering rules then in force (%s)', rules.version);
        ELSIF other.priority OPERATOR(pg_catalog.>) fan.priority THEN
            RETURN pg_catalog.format('their priority is higher than yours (%s)', fan.priority);
        ELSE
            RETURN pg_catalog.format('places count from the confirmation, and they confirmed %s before you',
                                     waitlist.spoken_interval(fan.confirmed_at OPERATOR(pg_catalog.-) other.confirmed_at));
        END IF;
    END IF;

    -- skip_to_fit: the promotion passed over parties larger than the units it had
    IF fan.quantity OPERATOR(pg_catalog.>) other.quantity AND EXISTS (
        SELECT 1 FROM waitlist_archive.transition_all p
        WHERE p.resource_id OPERATOR(pg_catalog.=) other.resource_id AND p.entity OPERATOR(pg_catalog.=) 'entry'
          AND p.entity_id OPERATOR(pg_catalog.=) other.entry_id AND p.transaction_id OPERATOR(pg_catalog.=) offered_by
          AND pg_catalog.starts_with(p.reason, 'promoted past a larger party')) THEN
        RETURN pg_catalog.format('your party of %s did not fit the units free then, and the resource offers them to the first party in line that fits (skip_to_fit); you kept your place',
                                 fan.quantity);
    END IF;

    IF exact_fifo THEN
        committed := pg_catalog.pg_xact_commit_timestamp(offered_by::pg_catalog.text::pg_catalog.xid);
    END IF;
    -- the fan's last move to WAITING before the offer, and their next move
    SELECT t.transition_id, t.at, t.transaction_id, t.from_state INTO waited
    FROM waitlist_archive.transition_all t
    WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'entry'
      AND t.entity_id OPERATOR(pg_catalog.=) fan.entry_id
      AND t.to_state OPERATOR(pg_catalog.=) 'WAITING' AND t.at OPERATOR(pg_catalog.<=) offered_at
    ORDER BY t.transition_id DESC LIMIT 1;
    SELECT t.at, t.to_state INTO moved
    FROM waitlist_archive.transition_all t
    WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'entry'
      AND t.entity_id OPERATOR(pg_catalog.=) fan.entry_id
      AND t.transition_id OPERATOR(pg_catalog.>) waited.transition_id
    ORDER BY t.transition_id LIMIT 1;
    IF exact_fifo AND committed IS NOT NULL
       AND pg_catalog.pg_xact_commit_timestamp(waited.transaction_id::pg_catalog.text::pg_catalog.xid) IS NOT NULL THEN
        visible := pg_catalog.pg_xact_commit_timestamp(waited.transaction_id::pg_catalog.text::pg_catalog.xid)
                       OPERATOR(pg_catalog.<) (offered_at OPERATOR(pg_catalog.-) commit_in_flight);
    ELSE
        visible := (waited.at OPERATOR(pg_catalog.+) interval '1 second') OPERATOR(pg_catalog.<) offered_at;
        committed := offered_at OPERATOR(pg_catalog.+) interval '1 second';
    END IF;
    IF NOT visible THEN
        RETURN pg_catalog.format('your %s was not yet committed when the offer was made, so the promotion could not see you waiting',
                                 CASE WHEN waited.from_state IS NULL THEN 'join'
                                      WHEN waited.from_state OPERATOR(pg_catalog.=) 'PENDING' THEN 'confirmation'
                                      ELSE 'return to the line' END);
    END IF;
    IF moved.at IS NOT NULL AND moved.at OPERATOR(pg_catalog.<=) committed THEN
        IF moved.to_state OPERATOR(pg_catalog.=) 'CANCELLED' THEN
            RETURN 'you were in the middle of leaving the line when the offer was made';
        END IF;
        RETURN pg_catalog.format('your entry was moving to %s when the offer was made', moved.to_state);
    END IF;
    RETURN 'your entry was busy in another transaction when the offer was made (for example a leave that was rolled back), so the promotion passed over it';
END
$reason$;

CREATE FUNCTION waitlist_explain(entry_id bigint)
RETURNS SETOF text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $explain$
#variable_conflict use_column
DECLARE
    fan waitlist_archive.entry_all := waitlist.explained_entry(waitlist_explain.entry_id);
    joined pg_catalog.record;
    step pg_catalog.record;
    last_reason pg_catalog.text;
    place bigint;
    left_at pg_catalog.timestamptz;
BEGIN
    SELECT t.at, t.to_state, t.rule_version INTO joined
    FROM waitlist_archive.transition_all t
    WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'entry'
      AND t.entity_id OPERATOR(pg_catalog.=) fan.entry_id AND t.from_state IS NULL
    ORDER BY t.transition_id LIMIT 1;
    IF NOT FOUND THEN
        -- an entry of 1.0 whose join the log does not hold
        SELECT fan.joined_at AS at, 'WAITING'::pg_catalog.text AS to_state,
               NULL::pg_catalog.text AS rule_version
        INTO joined;
    END IF;

    -- when the fan joined, and at which place
    IF joined.to_state OPERATOR(pg_catalog.=) 'PENDING' THEN
        RETURN NEXT pg_catalog.format('You joined %s ago, under ordering rules %s, with a place to confirm.',
                                      waitlist.spoken_interval(pg_catalog.now() OPERATOR(pg_catalog.-) fan.joined_at),
                                      coalesce(joined.rule_version, 'unknown'));
        FOR step IN
            SELECT t.at FROM waitlist_archive.transition_all t
            WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'entry'
              AND t.entity_id OPERATOR(pg_catalog.=) fan.entry_id
              AND t.from_state OPERATOR(pg_catalog.=) 'PENDING' AND t.to_state OPERATOR(pg_catalog.=) 'WAITING'
            ORDER BY t.transition_id LIMIT 1
        LOOP
            RETURN NEXT pg_catalog.format('You confirmed your place %s after joining, at place %s.',
                                          waitlist.spoken_interval(step.at OPERATOR(pg_catalog.-) joined.at),
                                          waitlist.position_at(fan.resource_id, fan.entry_id, step.at));
        END LOOP;
    ELSE
        RETURN NEXT pg_catalog.format('You joined %s ago, under ordering rules %s, at place %s.',
                                      waitlist.spoken_interval(pg_catalog.now() OPERATOR(pg_catalog.-) fan.joined_at),
                                      coalesce(joined.rule_version, 'unknown'),
                                      waitlist.position_at(fan.resource_id, fan.entry_id, joined.at));
    END IF;

    -- the end of the fan's time in line, if it ended
    IF NOT fan.state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING', 'OFFERED']) THEN
        SELECT t.at INTO left_at
        FROM waitlist_archive.transition_all t
        WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'entry'
          AND t.entity_id OPERATOR(pg_catalog.=) fan.entry_id
        ORDER BY t.transition_id DESC LIMIT 1;
    END IF;

    -- every offer made to someone who joined after the fan while the fan was in line
    FOR step IN
        SELECT t.at, t.transaction_id, s.state AS fan_state, x AS other
        FROM waitlist_archive.transition_all t
        JOIN waitlist_archive.offer_all o
          ON o.resource_id OPERATOR(pg_catalog.=) t.resource_id AND o.offer_id OPERATOR(pg_catalog.=) t.entity_id
        JOIN waitlist_archive.entry_all x
          ON x.resource_id OPERATOR(pg_catalog.=) o.resource_id AND x.entry_id OPERATOR(pg_catalog.=) o.entry_id
        CROSS JOIN LATERAL (
            SELECT f.to_state AS state FROM waitlist_archive.transition_all f
            WHERE f.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND f.entity OPERATOR(pg_catalog.=) 'entry'
              AND f.entity_id OPERATOR(pg_catalog.=) fan.entry_id AND f.at OPERATOR(pg_catalog.<) t.at
            ORDER BY f.transition_id DESC LIMIT 1
        ) s
        WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'offer'
          AND t.from_state IS NULL AND t.at OPERATOR(pg_catalog.>=) joined.at
          AND (left_at IS NULL OR t.at OPERATOR(pg_catalog.<=) left_at)
          AND (x.joined_at OPERATOR(pg_catalog.>) fan.joined_at
               OR (x.joined_at OPERATOR(pg_catalog.=) fan.joined_at AND x.entry_id OPERATOR(pg_catalog.>) fan.entry_id))
          AND s.state OPERATOR(pg_catalog.=) ANY (ARRAY['PENDING', 'WAITING'])
          -- an offer made to the fan in the same promotion overtook nobody
          AND NOT EXISTS (SELECT 1 FROM waitlist_archive.transition_all m
                          WHERE m.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND m.entity OPERATOR(pg_catalog.=) 'entry'
                            AND m.entity_id OPERATOR(pg_catalog.=) fan.entry_id
                            AND m.transaction_id OPERATOR(pg_catalog.=) t.transaction_id)
        ORDER BY t.transition_id
    LOOP
        RETURN NEXT pg_catalog.format('An offer was made %s ago to a priority %s fan who joined %s after you: %s.',
                                      waitlist.spoken_interval(pg_catalog.now() OPERATOR(pg_catalog.-) step.at),
                                      (step.other).priority,
                                      waitlist.spoken_interval((step.other).joined_at OPERATOR(pg_catalog.-) fan.joined_at),
                                      waitlist.overtake_reason(fan, step.fan_state, step.other, step.at, step.transaction_id));
    END LOOP;

    -- the ordering rules changed since the fan joined
    FOR step IN
        SELECT t.at, t.from_state, t.to_state, t.reason
        FROM waitlist_archive.transition_all t
        WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'resource'
          AND t.at OPERATOR(pg_catalog.>=) joined.at
        ORDER BY t.transition_id
    LOOP
        RETURN NEXT pg_catalog.format('The ordering rules changed %s ago, from %s to %s: %s.',
                                      waitlist.spoken_interval(pg_catalog.now() OPERATOR(pg_catalog.-) step.at),
                                      step.from_state, step.to_state,
                                      pg_catalog.regexp_replace(step.reason, '^ordering rules changed: ', ''));
    END LOOP;

    -- where the fan is now
    IF fan.state OPERATOR(pg_catalog.=) 'WAITING' THEN
        SELECT 1 OPERATOR(pg_catalog.+) pg_catalog.count(*) INTO place
        FROM waitlist.entry a
        WHERE a.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND a.state OPERATOR(pg_catalog.=) 'WAITING'
          AND (a.rank_key OPERATOR(pg_catalog.>) fan.rank_key
               OR (a.rank_key OPERATOR(pg_catalog.=) fan.rank_key AND a.seq OPERATOR(pg_catalog.<) fan.seq));
        RETURN NEXT pg_catalog.format('You are waiting now, at place %s, under ordering rules %s.', place,
                                      (SELECT r.rule_version FROM waitlist.resource r
                                       WHERE r.resource_id OPERATOR(pg_catalog.=) fan.resource_id));
    ELSIF fan.state OPERATOR(pg_catalog.=) 'PENDING' THEN
        RETURN NEXT 'Your place is not confirmed yet: confirm it to take part in offers.';
    ELSIF fan.state OPERATOR(pg_catalog.=) 'OFFERED' THEN
        RETURN NEXT 'You have an open offer now.';
    ELSE
        SELECT t.reason INTO last_reason
        FROM waitlist_archive.transition_all t
        WHERE t.resource_id OPERATOR(pg_catalog.=) fan.resource_id AND t.entity OPERATOR(pg_catalog.=) 'entry'
          AND t.entity_id OPERATOR(pg_catalog.=) fan.entry_id
        ORDER BY t.transition_id DESC LIMIT 1;
        RETURN NEXT pg_catalog.format('You are no longer in line: your entry is %s (%s).', fan.state,
                                      coalesce(last_reason, 'no reason recorded'));
    END IF;
END
$explain$;
COMMENT ON FUNCTION waitlist_explain(bigint) IS 'sentences for support: when the fan joined and at which place, every offer made to someone who joined later while the fan was in line and why, rule changes since, and where the fan is now';

/* ---- operations: duties and metrics ---- */

/*
 * Duties: named sets of privileges a DBA hands to an application role with
 * waitlist_grant(role, duty).  They are granted directly to the role, not
 * through group roles of our own: roles are cluster-wide, so an extension
 * that created them would collide with itself in a second database and leave
 * them behind after DROP EXTENSION.  The privileges live in the database's
 * own ACLs, so pg_dump keeps them and DROP EXTENSION removes them.
 *
 * A later version that adds functions to a duty replaces waitlist.duties() and
 * re-grants to the roles that hold the duty (see waitlist.duty_held()).
 */
CREATE FUNCTION waitlist.duties(OUT duty text, OUT object_type text,
                                OUT object_name text, OUT privilege text)
RETURNS SETOF record
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $duties$
    VALUES
        ('app', 'FUNCTION', '@extschema@.waitlist_join(text, text, integer, integer)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_leave(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_status(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_accept(bigint, text)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_decline(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_inbox(text, interval)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_offer_seen(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_offer_token(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_extend_offer(bigint, interval, text, text)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_confirm(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_entry_owner(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_offer_owner(bigint)', 'EXECUTE'),
        ('token', 'FUNCTION', '@extschema@.waitlist_accept_token(text, text)', 'EXECUTE'),
        ('token', 'FUNCTION', '@extschema@.waitlist_decline_token(text)', 'EXECUTE'),
        ('token', 'FUNCTION', '@extschema@.waitlist_token_offer(text)', 'EXECUTE'),
        ('booking', 'FUNCTION', '@extschema@.waitlist_release(text, integer, text)', 'EXECUTE'),
        ('booking', 'FUNCTION', '@extschema@.waitlist_capacity_trigger()', 'EXECUTE'),
        ('booking', 'FUNCTION', '@extschema@.waitlist_booking_confirmed(bigint, text)', 'EXECUTE'),
        ('booking', 'FUNCTION', '@extschema@.waitlist_booking_failed(bigint, text, boolean)', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_claim(text, integer, interval, text[])', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_ack(bigint, bigint)', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_fail(bigint, bigint, text)', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_retry(bigint)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval, text, interval, integer, interval, interval, interval, text, text, integer[], double precision, integer, timestamp with time zone, interval, boolean, integer, text, integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean, text, interval, integer, interval, boolean, interval, boolean, interval, boolean, text, text, integer[], boolean, double precision, integer, boolean, timestamp with time zone, boolean, interval, boolean, boolean, integer, text, integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_promote(text, integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_sweep(integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_schedule_sweep(text)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_unschedule_sweep()', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_retry_event(text, text)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_outbox_retry(bigint)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_set_channel_rate(text, double precision, integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_archive(interval, integer)', 'EXECUTE'),
        ('admin', 'PROCEDURE', '@extschema@.waitlist_archive_all(interval, integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_schedule_archive(text, interval)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_unschedule_archive()', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_rotate_token_key()', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_status(bigint)', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_check(text, interval)', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_worker_status()', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_cluster_worker_status()', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_metrics()', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_history(bigint)', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_explain(bigint)', 'EXECUTE'),
        ('monitor', 'SCHEMA', 'waitlist', 'USAGE'),
        ('monitor', 'TABLE', 'waitlist.resource_stats', 'SELECT'),
        ('monitor', 'TABLE', 'waitlist.outbox_stats', 'SELECT'),
        ('monitor', 'TABLE', 'waitlist.lag_stats', 'SELECT'),
        ('monitor', 'TABLE', 'waitlist.offer_outcomes', 'SELECT')
$duties$;

CREATE FUNCTION waitlist_duty_privileges(OUT duty text, OUT object_type text,
                                         OUT object_name text, OUT privilege text)
RETURNS SETOF record
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $duties$
    SELECT d.duty, d.object_type, d.object_name, d.privilege FROM waitlist.duties() d
$duties$;
COMMENT ON FUNCTION waitlist_duty_privileges() IS 'the privileges each duty of waitlist_grant() consists of';

/*
 * True when the role holds the privilege by a grant made to it directly:
 * privileges it has through PUBLIC, membership or superuser status are not
 * the duty's, and revoking a duty must leave them alone.
 */
CREATE FUNCTION waitlist.privilege_held(role oid, object_type text, object_name text, privilege text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $held$
    SELECT EXISTS (
        SELECT 1
        FROM (SELECT p.proacl AS acl FROM pg_catalog.pg_proc p
              WHERE privilege_held.object_type OPERATOR(pg_catalog.=) 'FUNCTION'
                AND p.oid OPERATOR(pg_catalog.=) privilege_held.object_name::pg_catalog.regprocedure
              UNION ALL
              SELECT c.relacl FROM pg_catalog.pg_class c
              WHERE privilege_held.object_type OPERATOR(pg_catalog.=) 'TABLE'
                AND c.oid OPERATOR(pg_catalog.=) privilege_held.object_name::pg_catalog.regclass
              UNION ALL
              SELECT n.nspacl FROM pg_catalog.pg_namespace n
              WHERE privilege_held.object_type OPERATOR(pg_catalog.=) 'SCHEMA'
                AND n.nspname OPERATOR(pg_catalog.=) privilege_held.object_name) o
        CROSS JOIN LATERAL pg_catalog.aclexplode(o.acl) a
        WHERE a.grantee OPERATOR(pg_catalog.=) privilege_held.role
          AND a.privilege_type OPERATOR(pg_catalog.=) privilege_held.privilege)
$held$;

/* True when the role holds every privilege of the duty directly. */
CREATE FUNCTION waitlist.duty_held(role oid, duty text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $held$
    SELECT pg_catalog.bool_and(waitlist.privilege_held(duty_held.role, d.object_type, d.object_name, d.privilege))
    FROM waitlist.duties() d
    WHERE d.duty OPERATOR(pg_catalog.=) duty_held.duty
$held$;

/* An object of a duty as GRANT and REVOKE name it, schema-qualified. */
CREATE FUNCTION waitlist.duty_object(object_type text, object_name text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $object$
    SELECT pg_catalog.concat_ws(' ', duty_object.object_type,
                                CASE WHEN duty_object.object_type OPERATOR(pg_catalog.=) ANY (ARRAY['FUNCTION', 'PROCEDURE'])
                                     THEN duty_object.object_name::pg_catalog.regprocedure::pg_catalog.text
                                     WHEN duty_object.object_type OPERATOR(pg_catalog.=) 'TABLE'
                                     THEN duty_object.object_name::pg_catalog.regclass::pg_catalog.text
                                     ELSE pg_catalog.quote_ident(duty_object.object_name)
                                END)
$object$;

/* The checks waitlist_grant() and waitlist_revoke() share; returns the role's name. */
CREATE FUNCTION waitlist.duty_check_arguments(role regrole, duty text)
RETURNS name
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $check$
DECLARE
    rolename pg_catalog.name;
BEGIN
    IF role IS NULL OR duty IS NULL THEN
        RAISE EXCEPTION 'role and duty must not be null'
            USING ERRCODE := 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM waitlist.duties() d
                   WHERE d.duty OPERATOR(pg_catalog.=) duty_check_arguments.duty) THEN
        RAISE EXCEPTION 'unknown waitlist duty "%"', duty
            USING ERRCODE := 'invalid_parameter_value',
                  DETAIL := 'The duties are app, token, booking, relay, admin and monitor.';
    END IF;
    SELECT r.rolname INTO rolename FROM pg_catalog.pg_roles r
    WHERE r.oid OPERATOR(pg_catalog.=) role::pg_catalog.oid;
    IF rolename IS NULL THEN
        RAISE EXCEPTION 'role with OID % does not exist', role::pg_catalog.oid
            USING ERRCODE := 'undefined_object';
    END IF;
    -- revoking from the owner would strip the grantor of its own privileges
    IF role::pg_catalog.oid OPERATOR(pg_catalog.=)
       (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'waitlist') THEN
        RAISE EXCEPTION 'role "%" owns the waitlist extension', rolename
            USING ERRCODE := 'invalid_parameter_value',
                  DETAIL := 'The owner holds the privileges of every duty; they are neither granted nor revoked.';
    END IF;
    RETURN rolename;
END
$check$;

/*
 * Grants run as the extension owner (SECURITY DEFINER), who holds every
 * privilege a duty names with the right to grant it.  Only the owner, a
 * superuser and roles the owner gave EXECUTE on these two functions may call
 * them; no duty includes them.
 */
CREATE FUNCTION waitlist_grant(role regrole, duty text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $grant$
DECLARE
    rolename pg_catalog.name := waitlist.duty_check_arguments(role, duty);
    p pg_catalog.record;
BEGIN
    FOR p IN SELECT d.object_type, d.object_name, d.privilege
             FROM waitlist.duties() d
             WHERE d.duty OPERATOR(pg_catalog.=) waitlist_grant.duty
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %I', p.privilege,
                                  waitlist.duty_object(p.object_type, p.object_name), rolename);
    END LOOP;
END
$grant$;
COMMENT ON FUNCTION waitlist_grant(regrole, text) IS 'grants a role one duty (app, token, booking, relay, admin, monitor): the privileges listed by waitlist_duty_privileges()';

/*
 * Revoking a duty keeps the privileges the role still needs for another duty
 * it holds (waitlist_status belongs to app and monitor).
 */
CREATE FUNCTION waitlist_revoke(role regrole, duty text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $revoke$
DECLARE
    rolename pg_catalog.name := waitlist.duty_check_arguments(role, duty);
    kept pg_catalog.text[];
    p pg_catalog.record;
BEGIN
    SELECT pg_catalog.array_agg(o.duty) INTO kept
    FROM (SELECT DISTINCT d.duty FROM waitlist.duties() d
          WHERE d.duty OPERATOR(pg_catalog.<>) waitlist_revoke.duty) o
    WHERE waitlist.duty_held(waitlist_revoke.role::pg_catalog.oid, o.duty);

    FOR p IN SELECT d.object_type, d.object_name, d.privilege
             FROM waitlist.duties() d
             WHERE d.duty OPERATOR(pg_catalog.=) waitlist_revoke.duty
               AND NOT EXISTS (SELECT 1 FROM waitlist.duties() k
                               WHERE k.duty OPERATOR(pg_catalog.=) ANY (kept)
                                 AND k.object_type OPERATOR(pg_catalog.=) d.object_type
                                 AND k.object_name OPERATOR(pg_catalog.=) d.object_name
                                 AND k.privilege OPERATOR(pg_catalog.=) d.privilege)
    LOOP
        EXECUTE pg_catalog.format('REVOKE %s ON %s FROM %I', p.privilege,
                                  waitlist.duty_object(p.object_type, p.object_name), rolename);
    END LOOP;
END
$revoke$;
COMMENT ON FUNCTION waitlist_revoke(regrole, text) IS 'revokes a duty from a role, keeping what another duty it holds still needs';

/*
 * Metrics.  The windows and the partial indexes below keep a scrape reading
 * what changed recently and what is still pending, not the history; the
 * per-resource offer totals are one pass over waitlist.offer plus what
 * waitlist_archive() moved out, read from its one row per resource in
 * waitlist_archive.resource_totals, so they never go back (Prometheus
 * reads a drop as a counter reset).
 */
-- capacity_event_processed_idx, which the release lag reads, comes with the
-- retention section above (archiving reads it too)
CREATE INDEX outbox_delivered_offer_idx ON waitlist.outbox (delivered_at, channel)
    WHERE state OPERATOR(pg_catalog.=) 'DELIVERED' AND event_type OPERATOR(pg_catalog.=) 'offer_created';
CREATE INDEX outbox_dead_idx ON waitlist.outbox (resource_id, channel)
    WHERE state OPERATOR(pg_catalog.=) 'DEAD';

CREATE VIEW waitlist.resource_stats AS
SELECT r.resource_id,
       coalesce(w.waiting, 0) AS waiting,
       coalesce(ev.pending_events, 0) AS pending_events,
       coalesce(ev.pending_units, 0) AS pending_units,
       coalesce(o.open_offers, 0) AS open_offers,
       r.free_units,
       coalesce(o.accepted, 0) OPERATOR(pg_catalog.+) coalesce(t.offers_accepted, 0) AS accepted,
       coalesce(o.declined, 0) OPERATOR(pg_catalog.+) coalesce(t.offers_declined, 0) AS declined,
       coalesce(o.expired, 0) OPERATOR(pg_catalog.+) coalesce(t.offers_expired, 0) AS expired,
       coalesce(o.expired_unseen, 0) OPERATOR(pg_catalog.+) coalesce(t.offers_expired_unseen, 0) AS expired_unseen,
       coalesce(o.booking_failures, 0) OPERATOR(pg_catalog.+) coalesce(t.offers_failed, 0) AS booking_failures,
       coalesce(ev.dead_events, 0) AS dead_events,
       coalesce(b.outbox_backlog, 0) AS outbox_backlog,
       b.outbox_oldest_seconds,
       coalesce(o.bookings_in_progress, 0) AS bookings_in_progress,
       coalesce(w.unconfirmed, 0) AS unconfirmed
FROM waitlist.resource r
LEFT JOIN (SELECT e.resource_id,
                  pg_catalog.count(*) FILTER (WHERE e.state OPERATOR(pg_catalog.=) 'WAITING') AS waiting,
                  pg_catalog.count(*) FILTER (WHERE e.state OPERATOR(pg_catalog.=) 'PENDING') AS unconfirmed
           FROM waitlist.entry e
           WHERE e.state OPERATOR(pg_catalog.=) ANY (ARRAY['WAITING', 'PENDING'])
           GROUP BY e.resource_id) w
       ON w.resource_id OPERATOR(pg_catalog.=) r.resource_id
LEFT JOIN (SELECT c.resource_id,
                  pg_catalog.count(*) FILTER (WHERE c.state OPERATOR(pg_catalog.=) 'PENDING') AS pending_events,
                  coalesce(pg_catalog.sum(c.quantity) FILTER (WHERE c.state OPERATOR(pg_catalog.=) 'PENDING'), 0) AS pending_units,
                  pg_catalog.count(*) FILTER (WHERE c.state OPERATOR(pg_catalog.=) 'DEAD') AS dead_events
           FROM waitlist.capacity_event c
           WHERE c.state OPERATOR(pg_catalog.=) 'PENDING' OR c.state OPERATOR(pg_catalog.=) 'DEAD'
           GROUP BY c.resource_id) ev
       ON ev.resource_id OPERATOR(pg_catalog.=) r.resource_id
LEFT JOIN (SELECT f.resource_id,
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'OPEN') AS open_offers,
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'ACCEPTED') AS accepted,
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'DECLINED') AS declined,
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'EXPIRED') AS expired,
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'EXPIRED' AND f.seen_at IS NULL) AS expired_unseen,
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'FAILED') AS booking_failures,
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'ACCEPTING') AS bookings_in_progress
           FROM waitlist.offer f
           GROUP BY f.resource_id) o
       ON o.resource_id OPERATOR(pg_catalog.=) r.resource_id
LEFT JOIN (SELECT x.resource_id, pg_catalog.count(*) AS outbox_backlog,
                  pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(x.created_at)) AS outbox_oldest_seconds
           FROM waitlist.outbox x
           WHERE x.state OPERATOR(pg_catalog.=) 'PENDING'
           GROUP BY x.resource_id) b
       ON b.resource_id OPERATOR(pg_catalog.=) r.resource_id
LEFT JOIN waitlist_archive.resource_totals t
       ON t.resource_id OPERATOR(pg_catalog.=) r.resource_id;
COMMENT ON VIEW waitlist.resource_stats IS 'per resource: line, pending and dead capacity events, offers by outcome (hot and archived: counters), free units, outbox backlog, bookings in progress (ACCEPTING), unconfirmed places (PENDING)';

/* The outbox backlog per resource and channel: what relays have yet to deliver. */
CREATE VIEW waitlist.outbox_stats AS
SELECT x.resource_id, x.channel,
       pg_catalog.count(*) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'PENDING') AS backlog,
       pg_catalog.count(*) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'PENDING'
                                     AND x.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS leased,
       pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-)
                            pg_catalog.min(x.created_at) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'PENDING')) AS oldest_seconds,
       pg_catalog.count(*) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'DEAD') AS dead
FROM waitlist.outbox x
WHERE x.state OPERATOR(pg_catalog.=) 'PENDING' OR x.state OPERATOR(pg_catalog.=) 'DEAD'
GROUP BY x.resource_id, x.channel;
COMMENT ON VIEW waitlist.outbox_stats IS 'per resource and channel: outbox rows pending (and leased), the oldest one''s age, dead-lettered rows';

/* The q-quantile of sorted values, nearest rank; NULL for no values. */
CREATE FUNCTION waitlist.quantile(sorted double precision[], q double precision)
RETURNS double precision
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $quantile$
    SELECT sorted[GREATEST(1, pg_catalog.ceil(q OPERATOR(pg_catalog.*) pg_catalog.cardinality(sorted))::integer)]
$quantile$;

/*
 * Latencies over the last five minutes (nearest-rank quantiles).  release_to_offer: from a capacity
 * event's arrival to the transaction that folded it into offers (zero for
 * inline releases, which offer in the releasing transaction).
 * offer_to_delivered: from an offer to the relay's ack of its offer_created
 * row, per channel.
 */
CREATE VIEW waitlist.lag_stats AS
SELECT s.lag, s.channel, s.samples, s.sum_seconds,
       waitlist.quantile(s.sorted, 0.5) AS p50_seconds,
       waitlist.quantile(s.sorted, 0.95) AS p95_seconds,
       waitlist.quantile(s.sorted, 0.99) AS p99_seconds
FROM (SELECT 'release_to_offer'::pg_catalog.text AS lag, NULL::pg_catalog.text AS channel,
             pg_catalog.count(l.seconds) AS samples,
             coalesce(pg_catalog.sum(l.seconds), 0) AS sum_seconds,
             pg_catalog.array_agg(l.seconds ORDER BY l.seconds) AS sorted
      FROM (SELECT pg_catalog.date_part('epoch', c.processed_at OPERATOR(pg_catalog.-) c.received_at) AS seconds
            FROM waitlist.capacity_event c
            WHERE c.state OPERATOR(pg_catalog.=) 'PROCESSED'
              AND c.processed_at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) '5 minutes'::pg_catalog.interval)) l
      UNION ALL
      SELECT 'offer_to_delivered', ch.channel,
             pg_catalog.count(l.seconds),
             coalesce(pg_catalog.sum(l.seconds), 0),
             pg_catalog.array_agg(l.seconds ORDER BY l.seconds) FILTER (WHERE l.seconds IS NOT NULL)
      FROM waitlist.channel ch
      LEFT JOIN (SELECT x.channel, pg_catalog.date_part('epoch', x.delivered_at OPERATOR(pg_catalog.-) x.created_at) AS seconds
                 FROM waitlist.outbox x
                 WHERE x.state OPERATOR(pg_catalog.=) 'DELIVERED' AND x.event_type OPERATOR(pg_catalog.=) 'offer_created'
                   AND x.delivered_at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) '5 minutes'::pg_catalog.interval)) l
             ON l.channel OPERATOR(pg_catalog.=) ch.channel
      GROUP BY ch.channel) s;
COMMENT ON VIEW waitlist.lag_stats IS 'release -> offer and offer -> delivered (per channel) latencies over the last five minutes';

/* A Prometheus label value: backslash, double quote and newline escaped. */
CREATE FUNCTION waitlist.prometheus_label(value text)
RETURNS text
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $label$
    SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
$label$;

/*
 * The workers' status for waitlist_metrics(): the C function behind
 * waitlist_worker_status(), declared again in schema waitlist so that SQL
 * of the extension can name it without knowing the API's schema.
 */
CREATE FUNCTION waitlist.worker_status(OUT worker integer,
                                       OUT pid integer,
                                       OUT resources_owned bigint,
                                       OUT last_wake timestamptz,
                                       OUT events_processed bigint,
                                       OUT offers_made bigint,
                                       OUT offers_expired bigint,
                                       OUT last_error text,
                                       OUT last_error_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'waitlist_worker_status'
LANGUAGE C;

/*
 * waitlist_metrics(): the views and the workers' counters in the Prometheus
 * text exposition format (version 0.0.4), one HELP and TYPE line per metric.
 * Without preloaded workers the worker metrics are left out.
 */
CREATE FUNCTION waitlist_metrics()
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $metrics$
DECLARE
    workers_loaded boolean := true;
    distributed boolean := waitlist.tables_distributed();
    resources waitlist.resource_stats[];
    outboxes waitlist.outbox_stats[];
    lags waitlist.lag_stats[];
    result pg_catalog.text;
BEGIN
    BEGIN
        PERFORM 1 FROM waitlist.worker_status();
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        workers_loaded := false;
    END;
    /*
     * The views first, each a query of its own: on Citus, the one query
     * below would read them through intermediate results it loses.
     */
    SELECT pg_catalog.array_agg(s) INTO resources FROM waitlist.resource_stats s;
    SELECT pg_catalog.array_agg(s) INTO outboxes FROM waitlist.outbox_stats s;
    SELECT pg_catalog.array_agg(s) INTO lags FROM waitlist.lag_stats s;

    WITH families AS (SELECT * FROM (VALUES
        (1, 'waitlist_resources', 'gauge', 'Resources with a waitlist.'),
        (2, 'waitlist_entries_waiting', 'gauge', 'Entries waiting in line.'),
        (3, 'waitlist_capacity_events_pending', 'gauge', 'Capacity events recorded and not yet folded into offers.'),
        (4, 'waitlist_capacity_units_pending', 'gauge', 'Units of the pending capacity events.'),
        (5, 'waitlist_capacity_events_dead', 'gauge', 'Capacity events given up after repeated failures.'),
        (6, 'waitlist_offers_open', 'gauge', 'Offers open, waiting for the fan''s answer.'),
        (7, 'waitlist_free_units', 'gauge', 'Released units not offered to anyone.'),
        (8, 'waitlist_offers_accepted_total', 'counter', 'Offers accepted.'),
        (9, 'waitlist_offers_declined_total', 'counter', 'Offers declined.'),
        (10, 'waitlist_offers_expired_total', 'counter', 'Offers that expired.'),
        (11, 'waitlist_offers_expired_unseen_total', 'counter', 'Offers that expired before the fan saw them.'),
        (12, 'waitlist_booking_failures_total', 'counter', 'Accepts whose booking function failed the offer.'),
        (13, 'waitlist_outbox_backlog', 'gauge', 'Outbox rows not yet delivered.'),
        (14, 'waitlist_outbox_oldest_age_seconds', 'gauge', 'Age of the oldest undelivered outbox row.'),
        (15, 'waitlist_outbox_dead', 'gauge', 'Outbox rows dead-lettered.'),
        (16, 'waitlist_release_to_offer_seconds', 'gauge', 'Time from a capacity event to its offers over the last five minutes, by quantile.'),
        (17, 'waitlist_release_to_offer_samples', 'gauge', 'Capacity events folded in the last five minutes.'),
        (18, 'waitlist_offer_to_delivered_seconds', 'gauge', 'Time from an offer to the delivery of its notification over the last five minutes, by quantile.'),
        (19, 'waitlist_offer_to_delivered_samples', 'gauge', 'Offer notifications delivered in the last five minutes.'),
        (20, 'waitlist_worker_up', 'gauge', 'Whether the promotion worker is running.'),
        (21, 'waitlist_worker_resources_owned', 'gauge', 'Resources in the promotion worker''s share.'),
        (22, 'waitlist_worker_events_processed_total', 'counter', 'Capacity events the promotion worker folded since the server started.'),
        (23, 'waitlist_worker_offers_made_total', 'counter', 'Offers the promotion worker made since the server started.'),
        (24, 'waitlist_worker_offers_expired_total', 'counter', 'Offers the promotion worker expired since the server started.'),
        (25, 'waitlist_worker_last_wake_timestamp_seconds', 'gauge', 'When the promotion worker last woke, as a Unix time.'),
        (26, 'waitlist_worker_last_error_timestamp_seconds', 'gauge', 'When the promotion worker last failed, as a Unix time.'),
        (27, 'waitlist_bookings_in_progress', 'gauge', 'Accepted offers an external booking service is booking (ACCEPTING).'),
        (28, 'waitlist_entries_unconfirmed', 'gauge', 'Places held until the fan confirms them (PENDING).')
        ) AS f(ord, name, kind, help)
    ), rs AS MATERIALIZED (
        SELECT s.*, pg_catalog.format('resource="%s"', waitlist.prometheus_label(s.resource_id)) AS label
        FROM pg_catalog.unnest(coalesce(resources, '{}')) s
    ), os AS MATERIALIZED (
        SELECT s.*, pg_catalog.format('resource="%s",channel="%s"',
                                      waitlist.prometheus_label(s.resource_id), s.channel) AS label
        FROM pg_catalog.unnest(coalesce(outboxes, '{}')) s
    ), ls AS MATERIALIZED (
        SELECT s.*, CASE WHEN s.channel IS NULL THEN ''
                         ELSE pg_catalog.format('channel="%s",', s.channel) END AS label
        FROM pg_catalog.unnest(coalesce(lags, '{}')) s
    ), ws AS MATERIALIZED (
        SELECT s.pid, s.resources_owned, s.events_processed, s.offers_made, s.offers_expired,
               s.last_wake, s.last_error_at, pg_catalog.format('worker="%s"', s.worker) AS label
        FROM waitlist.worker_status() s
        WHERE workers_loaded AND NOT distributed
        UNION ALL
        -- on Citus, the workers of every node
        SELECT c.pid, c.resources_owned, c.events_processed, c.offers_made, c.offers_expired,
               c.last_wake, c.last_error_at,
               pg_catalog.format('node="%s:%s",worker="%s"', waitlist.prometheus_label(c.node_name),
                                 c.node_port, coalesce(c.worker::pg_catalog.text, ''))
        FROM @extschema@.waitlist_cluster_worker_status() c
        WHERE distributed
    ), samples AS (
        SELECT 'waitlist_resources' AS name, '' AS label, pg_catalog.count(*)::pg_catalog.float8 AS value FROM rs
        UNION ALL
        SELECT v.name, rs.label, v.value
        FROM rs CROSS JOIN LATERAL (VALUES
            ('waitlist_entries_waiting', rs.waiting::pg_catalog.float8),
            ('waitlist_capacity_events_pending', rs.pending_events::pg_catalog.float8),
            ('waitlist_capacity_units_pending', rs.pending_units::pg_catalog.float8),
            ('waitlist_capacity_events_dead', rs.dead_events::pg_catalog.float8),
            ('waitlist_offers_open', rs.open_offers::pg_catalog.float8),
            ('waitlist_free_units', rs.free_units::pg_catalog.float8),
            ('waitlist_offers_accepted_total', rs.accepted::pg_catalog.float8),
            ('waitlist_offers_declined_total', rs.declined::pg_catalog.float8),
            ('waitlist_offers_expired_total', rs.expired::pg_catalog.float8),
            ('waitlist_offers_expired_unseen_total', rs.expired_unseen::pg_catalog.float8),
            ('waitlist_booking_failures_total', rs.booking_failures::pg_catalog.float8),
            ('waitlist_bookings_in_progress', rs.bookings_in_progress::pg_catalog.float8),
            ('waitlist_entries_unconfirmed', rs.unconfirmed::pg_catalog.float8)) AS v(name, value)
        UNION ALL
        SELECT v.name, os.label, v.value
        FROM os CROSS JOIN LATERAL (VALUES
            ('waitlist_outbox_backlog', os.backlog::pg_catalog.float8),
            ('waitlist_outbox_oldest_age_seconds', coalesce(os.oldest_seconds, 0)),
            ('waitlist_outbox_dead', os.dead::pg_catalog.float8)) AS v(name, value)
        UNION ALL
        SELECT pg_catalog.format('waitlist_%s_seconds', ls.lag), pg_catalog.format('%squantile="%s"', ls.label, v.q), v.value
        FROM ls CROSS JOIN LATERAL (VALUES
            ('0.5', ls.p50_seconds),
            ('0.95', ls.p95_seconds),
            ('0.99', ls.p99_seconds)) AS v(q, value)
        UNION ALL
        SELECT pg_catalog.format('waitlist_%s_samples', ls.lag), pg_catalog.rtrim(ls.label, ','), ls.samples::pg_catalog.float8
        FROM ls
        UNION ALL
        SELECT v.name, ws.label, v.value
        FROM ws CROSS JOIN LATERAL (VALUES
            ('waitlist_worker_up', CASE WHEN ws.pid IS NULL THEN 0 ELSE 1 END::pg_catalog.float8),
            ('waitlist_worker_resources_owned', ws.resources_owned::pg_catalog.float8),
            ('waitlist_worker_events_processed_total', ws.events_processed::pg_catalog.float8),
            ('waitlist_worker_offers_made_total', ws.offers_made::pg_catalog.float8),
            ('waitlist_worker_offers_expired_total', ws.offers_expired::pg_catalog.float8),
            ('waitlist_worker_last_wake_timestamp_seconds', pg_catalog.date_part('epoch', ws.last_wake)),
            ('waitlist_worker_last_error_timestamp_seconds', pg_catalog.date_part('epoch', ws.last_error_at))) AS v(name, value)
    )
    SELECT pg_catalog.string_agg(b.block, '' ORDER BY b.ord) INTO result
    FROM (SELECT f.ord,
                 pg_catalog.format(E'# HELP %s %s\n# TYPE %s %s\n%s', f.name, f.help, f.name, f.kind,
                                   (SELECT pg_catalog.string_agg(
                                               pg_catalog.format(E'%s%s %s\n', s.name,
                                                                 CASE WHEN s.label OPERATOR(pg_catalog.=) '' THEN ''
                                                                      ELSE pg_catalog.format('{%s}', s.label) END,
                                                                 coalesce(s.value::pg_catalog.text, 'NaN')),
                                               '' ORDER BY s.label)
                                    FROM samples s
                                    WHERE s.name OPERATOR(pg_catalog.=) f.name)) AS block
          FROM families f
          WHERE workers_loaded OR distributed OR NOT pg_catalog.starts_with(f.name, 'waitlist_worker_')) b;
    RETURN result;
END
$metrics$;
COMMENT ON FUNCTION waitlist_metrics() IS 'the waitlist''s metrics and the promotion workers'' counters in the Prometheus text exposition format';

/* ---- the transition engine: the state machine and its guards ---- */

/*
 * The engine's statements write their audit rows themselves (src/transition.c),
 * so the statement triggers that read transition tables go: they cost a
 * tenth of every join, and a distributed engine cannot run them.  A state
 * change made by hand is checked against the state machine by the row guard
 * below, refused (WL010) if the machine has no such move, and otherwise
 * audited as 'manual' by the guard in the same statement.
 */
DROP TRIGGER entry_insert_audit ON waitlist.entry;
DROP TRIGGER entry_update_audit ON waitlist.entry;
DROP TRIGGER offer_insert_audit ON waitlist.offer;
DROP TRIGGER offer_update_audit ON waitlist.offer;
DROP FUNCTION waitlist.record_transitions();

CREATE FUNCTION waitlist.guard_transition()
RETURNS trigger
AS 'MODULE_PATHNAME', 'waitlist_guard_transition'
LANGUAGE C;
COMMENT ON FUNCTION waitlist.guard_transition() IS 'row guard of waitlist.entry and waitlist.offer: every state must be a transition of waitlist.state_machine(); a change by hand is audited as manual';

CREATE TRIGGER entry_insert_guard
    BEFORE INSERT ON waitlist.entry
    FOR EACH ROW EXECUTE FUNCTION waitlist.guard_transition('entry');
CREATE TRIGGER entry_update_guard
    BEFORE UPDATE ON waitlist.entry
    FOR EACH ROW WHEN (OLD.state OPERATOR(pg_catalog.<>) NEW.state)
    EXECUTE FUNCTION waitlist.guard_transition('entry');
CREATE TRIGGER offer_insert_guard
    BEFORE INSERT ON waitlist.offer
    FOR EACH ROW EXECUTE FUNCTION waitlist.guard_transition('offer');
CREATE TRIGGER offer_update_guard
    BEFORE UPDATE ON waitlist.offer
    FOR EACH ROW WHEN (OLD.state OPERATOR(pg_catalog.<>) NEW.state)
    EXECUTE FUNCTION waitlist.guard_transition('offer');
-- a restore runs with session_replication_role = replica (docs/operations.md)
ALTER TABLE waitlist.entry ENABLE ALWAYS TRIGGER entry_insert_guard;
ALTER TABLE waitlist.entry ENABLE ALWAYS TRIGGER entry_update_guard;
ALTER TABLE waitlist.offer ENABLE ALWAYS TRIGGER offer_insert_guard;
ALTER TABLE waitlist.offer ENABLE ALWAYS TRIGGER offer_update_guard;

CREATE FUNCTION waitlist.state_machine(OUT entity text, OUT from_state text,
                                       OUT event text, OUT to_state text,
                                       OUT unit text, OUT outbox_event text,
                                       OUT reason text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'waitlist_state_machine'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION waitlist.state_machine() IS 'the transitions of entries and offers the engine applies: from_state NULL creates the row; unit is what happens to the offered unit of capacity';

/* ---- signed offer tokens ---- */

/*
 * The keys that sign offer tokens (src/token.c).  The one key without
 * verifies_until signs; a rotated key verifies until verifies_until (the
 * last deadline of the offers that existed when it was rotated), then
 * nothing, and the next rotation erases it.  Readable only by the extension
 * owner (and superusers): no privilege on it is granted, and the schema's
 * USAGE is not granted to PUBLIC.  Not registered with
 * pg_extension_config_dump: the secrets stay out of dumps, and a restored
 * database signs with a key of its own (docs/operations.md).
 */
CREATE TABLE waitlist.token_key (
    key_id integer PRIMARY KEY CHECK (key_id OPERATOR(pg_catalog.>) 0),
    secret bytea NOT NULL CHECK (pg_catalog.length(secret) OPERATOR(pg_catalog.=) 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    verifies_until timestamptz
);
CREATE UNIQUE INDEX token_key_one_signing ON waitlist.token_key ((true))
    WHERE verifies_until IS NULL;
REVOKE ALL ON TABLE waitlist.token_key FROM PUBLIC;
COMMENT ON TABLE waitlist.token_key IS 'HMAC-SHA256 keys of the signed offer tokens: the key without verifies_until signs, the others verify until verifies_until';

CREATE FUNCTION waitlist.token_key_material()
RETURNS bytea
AS 'MODULE_PATHNAME', 'waitlist_token_key_material'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION waitlist.token_key_material() IS '32 bytes from pg_strong_random() for a new token key';

-- the first key, made in the database being installed or updated
INSERT INTO waitlist.token_key (key_id, secret)
SELECT 1, waitlist.token_key_material();

CREATE FUNCTION waitlist.offer_token_for(resource_id text, offer_id bigint, expires_at timestamptz)
RETURNS text
AS 'MODULE_PATHNAME', 'waitlist_offer_token_for'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION waitlist.offer_token_for(text, bigint, timestamptz) IS 'the signed token of an offer being made, for its offer_created outbox rows (internal)';

CREATE FUNCTION waitlist_offer_token(offer_id bigint)
RETURNS text
AS 'MODULE_PATHNAME', 'waitlist_offer_token'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_offer_token(bigint) IS 'a signed, URL-safe token naming the offer and its resource, expiring with the offer';

CREATE FUNCTION waitlist_accept_token(token text, idempotency_key text,
                                      OUT state text, OUT reservation_ref text)
RETURNS record
AS 'MODULE_PATHNAME', 'waitlist_accept_token'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_accept_token(text, text) IS 'waitlist_accept() of the offer a signed token names, after verifying it';

CREATE FUNCTION waitlist_decline_token(token text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_decline_token'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_decline_token(text) IS 'waitlist_decline() of the offer a signed token names, after verifying it';

CREATE FUNCTION waitlist_rotate_token_key()
RETURNS integer
AS 'MODULE_PATHNAME', 'waitlist_rotate_token_key'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_rotate_token_key() IS 'makes a new token signing key and returns its id; the previous key verifies until the offers that exist now have expired';

/*
 * Look-ups for front ends that act for fans (waitlist-gateway): whose an
 * entry or offer is, so that a fan is refused another fan's entry in the
 * transaction of the call made for them, and what the offer a token names
 * looks like now, for the offer page behind a link.
 */
CREATE FUNCTION waitlist_entry_owner(entry_id bigint, OUT user_id text, OUT resource_id text,
                                     OUT joined_in_transaction boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'waitlist_entry_owner'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_entry_owner(bigint) IS 'the fan and resource of an entry, and whether this transaction made it (a join, not a double tap)';

CREATE FUNCTION waitlist_offer_owner(offer_id bigint, OUT user_id text, OUT resource_id text,
                                     OUT entry_id bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'waitlist_offer_owner'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_offer_owner(bigint) IS 'the fan, resource and entry of an offer';

CREATE FUNCTION waitlist_token_offer(token text, OUT offer_id bigint, OUT resource_id text,
                                     OUT state text, OUT expires_at timestamptz,
                                     OUT reservation_ref text)
RETURNS record
AS 'MODULE_PATHNAME', 'waitlist_token_offer'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_token_offer(text) IS 'the offer a signed token names, after verifying the token, as an offer page shows it';

/* ---- scale-out on Citus ---- */

/*
 * Spread the extension's tables over a Citus cluster, by resource_id
 * (docs/scale-out.md).  Run once on the coordinator, after CREATE EXTENSION
 * citus and CREATE EXTENSION waitlist on every node and citus_add_node() for
 * each worker; running it again distributes what is not distributed yet.
 *
 * - Every table of a resource's rows is distributed by resource_id, all in
 *   one co-location group, so a resource's rows live on one node and each
 *   API call's statements, and the triggers that audit them, stay on it.
 * - token_key becomes a reference table: every node signs and verifies.
 *   channel (the relay's rate limits, read and written by outbox claims)
 *   stays on the coordinator, where the relay claims.
 * - The calls named by a resource_id are delegated to the node that holds
 *   the resource: the coordinator passes the whole call on.
 * - Each node draws the ids of the rows it stores, ids no other node draws
 *   (waitlist.node_ids()), so an entry, offer or outbox id is unique in the
 *   whole cluster and a resource's ids grow across shard moves.
 */
CREATE FUNCTION waitlist_distribute(shard_count integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $distribute$
DECLARE
    tables pg_catalog.text[] := ARRAY[
        'waitlist.resource', 'waitlist.entry', 'waitlist.offer', 'waitlist.accept_request',
        'waitlist.offer_extension', 'waitlist.capacity_event', 'waitlist.outbox',
        'waitlist.transition', 'waitlist.line_sample',
        'waitlist_archive.resource_totals', 'waitlist_archive.entry', 'waitlist_archive.offer',
        'waitlist_archive.accept_request', 'waitlist_archive.offer_extension',
        'waitlist_archive.capacity_event', 'waitlist_archive.outbox',
        'waitlist_archive.transition'];
    delegated pg_catalog.text[] := ARRAY[
        '@extschema@.waitlist_join(text,text,integer,integer)',
        '@extschema@.waitlist_release(text,integer,text)',
        '@extschema@.waitlist_promote(text,integer)'];
    version pg_catalog.text;
    missing pg_catalog.text;
    existing_shards integer;
    t pg_catalog.text;
    f pg_catalog.text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'waitlist_distribute() needs the citus extension'
            USING ERRCODE := 'feature_not_supported',
                  HINT := 'Run CREATE EXTENSION citus on every node and add the worker nodes first; a single server needs no waitlist_distribute().';
    END IF;
    IF shard_count IS NOT NULL AND (shard_count OPERATOR(pg_catalog.<) 1 OR shard_count OPERATOR(pg_catalog.>) 4096) THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 4096'
            USING ERRCODE := 'invalid_parameter_value',
                  DETAIL := pg_catalog.format('The value given was %s.', shard_count);
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'waitlist_distribute() must run on the coordinator'
            USING ERRCODE := 'object_not_in_prerequisite_state',
                  HINT := 'Connect to the coordinator node and call it there.';
    END IF;

    SELECT e.extversion INTO version FROM pg_catalog.pg_extension e
     WHERE e.extname OPERATOR(pg_catalog.=) 'waitlist';
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s (%s)', w.nodename, w.nodeport,
                                    CASE WHEN NOT w.success THEN w.result
                                         WHEN w.result OPERATOR(pg_catalog.=) '' THEN 'not installed'
                                         ELSE 'version ' OPERATOR(pg_catalog.||) w.result END),
                                 ', ' ORDER BY w.nodename, w.nodeport)
      INTO missing
      FROM pg_catalog.run_command_on_workers(
               $q$SELECT extversion FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'waitlist'$q$) w
     WHERE NOT w.success OR w.result OPERATOR(pg_catalog.<>) version;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'the waitlist extension % is missing on some nodes', version
            USING ERRCODE := 'object_not_in_prerequisite_state',
                  DETAIL := pg_catalog.format('Nodes: %s.', missing),
                  HINT := 'Run CREATE EXTENSION waitlist (or ALTER EXTENSION waitlist UPDATE) in this database on each of those nodes (on a worker already added, with citus.enable_ddl_propagation off), then call waitlist_distribute() again.';
    END IF;

    SELECT pg_catalog.count(*)::integer INTO existing_shards
      FROM pg_catalog.pg_dist_shard s
     WHERE s.logicalrelid OPERATOR(pg_catalog.=) 'waitlist.resource'::pg_catalog.regclass;
    IF existing_shards OPERATOR(pg_catalog.>) 0 AND shard_count IS NOT NULL
       AND shard_count OPERATOR(pg_catalog.<>) existing_shards THEN
        RAISE EXCEPTION 'the waitlist tables are distributed already, in % shards', existing_shards
            USING ERRCODE := 'object_not_in_prerequisite_state',
                  HINT := 'Call waitlist_distribute() without a shard_count, or change the shard count with Citus''s alter_distributed_table().';
    END IF;

    -- triggers audit and guard every change; co-located functions need
    -- streaming replication (one placement per shard)
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM pg_catalog.set_config('citus.shard_replication_factor', '1', true);
    PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);

    FOREACH t IN ARRAY tables LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                               WHERE p.logicalrelid OPERATOR(pg_catalog.=) t::pg_catalog.regclass);
        IF t OPERATOR(pg_catalog.=) 'waitlist.resource' THEN
            PERFORM pg_catalog.create_distributed_table(t, 'resource_id',
                        shard_count => coalesce(shard_count,
                                                pg_catalog.current_setting('citus.shard_count')::integer));
        ELSE
            PERFORM pg_catalog.create_distributed_table(t, 'resource_id',
                                                        colocate_with => 'waitlist.resource');
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                    WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'waitlist.token_key'::pg_catalog.regclass) THEN
        PERFORM pg_catalog.create_reference_table('waitlist.token_key');
    END IF;

    FOREACH f IN ARRAY delegated LOOP
        PERFORM pg_catalog.create_distributed_function(f::pg_catalog.regprocedure, 'resource_id',
                                                       colocate_with => 'waitlist.resource');
    END LOOP;
    -- the calls named by an entry, offer or outbox id: Citus sends them to the
    -- node of the id's shard, which is its resource's (waitlist.node_ids())
    FOR f, t IN VALUES
        ('@extschema@.waitlist_leave(bigint)', 'entry_id'),
        ('@extschema@.waitlist_status(bigint)', 'entry_id'),
        ('@extschema@.waitlist_confirm(bigint)', 'entry_id'),
        ('@extschema@.waitlist_entry_owner(bigint)', 'entry_id'),
        ('@extschema@.waitlist_offer_owner(bigint)', 'offer_id'),
        ('@extschema@.waitlist_accept(bigint, pg_catalog.text)', 'offer_id'),
        ('@extschema@.waitlist_decline(bigint)', 'offer_id'),
        ('@extschema@.waitlist_offer_token(bigint)', 'offer_id'),
        ('@extschema@.waitlist_offer_seen(bigint)', 'offer_id'),
        ('@extschema@.waitlist_extend_offer(bigint, interval, pg_catalog.text, pg_catalog.text)', 'offer_id'),
        ('@extschema@.waitlist_booking_confirmed(bigint, pg_catalog.text)', 'offer_id'),
        ('@extschema@.waitlist_booking_failed(bigint, pg_catalog.text, boolean)', 'offer_id'),
        ('@extschema@.waitlist_outbox_ack(bigint, bigint)', 'outbox_id'),
        ('@extschema@.waitlist_outbox_fail(bigint, bigint, pg_catalog.text)', 'outbox_id'),
        ('@extschema@.waitlist_outbox_retry(bigint)', 'outbox_id') LOOP
        PERFORM pg_catalog.create_distributed_function(f::pg_catalog.regprocedure, t,
                                                       colocate_with => 'waitlist.resource');
    END LOOP;
    -- a call made on a node without its resource goes on through this one,
    -- in the caller's transaction (src/forward.c)
    PERFORM pg_catalog.create_distributed_function(
        'waitlist.forward(pg_catalog.text, pg_catalog.regprocedure, pg_catalog.text[], pg_catalog.oid)'::pg_catalog.regprocedure,
        'resource_id', colocate_with => 'waitlist.resource', force_delegation => true);
    -- an outbox claim goes to each node with a key of that node (src/outbox.c)
    PERFORM pg_catalog.create_distributed_function(
        'waitlist.claim_here(pg_catalog.text, pg_catalog.text, integer, interval, integer[])'::pg_catalog.regprocedure,
        'route_key', colocate_with => 'waitlist.resource', force_delegation => true);

    -- a node's ids come from a range of its own, here and on each worker
    PERFORM waitlist.use_node_id_range();
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s (%s)', w.nodename, w.nodeport, w.result),
                                 ', ')
      INTO missing
      FROM pg_catalog.run_command_on_workers('SELECT waitlist.use_node_id_range()') w
     WHERE NOT w.success;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'could not give every node an id range of its own'
            USING ERRCODE := 'object_not_in_prerequisite_state',
                  DETAIL := pg_catalog.format('Nodes: %s.', missing),
                  HINT := 'Call waitlist_distribute() again once the nodes can be reached.';
    END IF;
END
$distribute$;
COMMENT ON FUNCTION waitlist_distribute(integer) IS 'distributes the waitlist tables over a Citus cluster by resource_id and delegates the per-resource calls to the node that holds the resource (run on the coordinator)';

CREATE FUNCTION waitlist.node_ids()
RETURNS trigger
AS 'MODULE_PATHNAME', 'waitlist_node_ids'
LANGUAGE C;
COMMENT ON FUNCTION waitlist.node_ids() IS 'gives a row stored on a Citus node its id from the node''s own sequence, above every id of its resource (internal)';

/*
 * On every install, so that the shards Citus makes of these tables have it;
 * on a single server it returns at once.  Not ENABLE ALWAYS: rows a restore
 * or a shard move copies keep their ids.
 */
CREATE TRIGGER node_ids BEFORE INSERT ON waitlist.entry
    FOR EACH ROW EXECUTE FUNCTION waitlist.node_ids('entry_id', 'entry_entry_id_seq');
CREATE TRIGGER node_ids BEFORE INSERT ON waitlist.offer
    FOR EACH ROW EXECUTE FUNCTION waitlist.node_ids('offer_id', 'offer_offer_id_seq');
CREATE TRIGGER node_ids BEFORE INSERT ON waitlist.outbox
    FOR EACH ROW EXECUTE FUNCTION waitlist.node_ids('outbox_id', 'outbox_outbox_id_seq');
CREATE TRIGGER node_ids BEFORE INSERT ON waitlist.transition
    FOR EACH ROW EXECUTE FUNCTION waitlist.node_ids('transition_id', 'transition_transition_id_seq');

CREATE FUNCTION waitlist.forward(resource_id pg_catalog.text, call pg_catalog.regprocedure,
                                 arguments pg_catalog.text[], caller pg_catalog.oid)
RETURNS SETOF pg_catalog.text[]
AS 'MODULE_PATHNAME', 'waitlist_forward'
LANGUAGE C;
COMMENT ON FUNCTION waitlist.forward(pg_catalog.text, pg_catalog.regprocedure, pg_catalog.text[], pg_catalog.oid) IS 'runs an API call passed on from another Citus node on the node that holds the resource, as the role that made it; its result as text (internal)';

CREATE FUNCTION waitlist.claim_here(route_key pg_catalog.text, consumer pg_catalog.text,
                                    max_rows integer, lease interval, quotas integer[],
                                    OUT outbox_id bigint,
                                    OUT resource_id pg_catalog.text,
                                    OUT user_id pg_catalog.text,
                                    OUT channel pg_catalog.text,
                                    OUT event_type pg_catalog.text,
                                    OUT payload pg_catalog.jsonb,
                                    OUT created_at pg_catalog.timestamptz,
                                    OUT attempts integer,
                                    OUT lease_token bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'waitlist_claim_here'
LANGUAGE C;
COMMENT ON FUNCTION waitlist.claim_here(pg_catalog.text, pg_catalog.text, integer, interval, integer[]) IS 'the outbox claim of the Citus node that route_key hashes to, over its shards, within the quotas the coordinator''s buckets give (internal)';

CREATE FUNCTION waitlist.tables_distributed()
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_tables_distributed_sql'
LANGUAGE C STABLE;
COMMENT ON FUNCTION waitlist.tables_distributed() IS 'whether waitlist_distribute() has distributed the tables over Citus (internal)';

/*
 * On Citus, waitlist_check() checks one resource at a time: each of its
 * queries must name the resource in every table it reads for Citus to send
 * it whole to the node that holds the resource.  waitlist.check_resource()
 * is waitlist_check() made so, from waitlist_check()'s own text: each table
 * it reads is read through a subquery of the checked resource's rows.
 */
DO $make_check_resource$
DECLARE
    body pg_catalog.text;
    setting pg_catalog.text;
BEGIN
    SELECT p.prosrc INTO body FROM pg_catalog.pg_proc p
     WHERE p.oid OPERATOR(pg_catalog.=)
           '@extschema@.waitlist_check(pg_catalog.text, interval)'::pg_catalog.regprocedure;
    body := pg_catalog.regexp_replace(body, '[-]- distributed: begin.*[-]- distributed: end', '');
    body := pg_catalog.regexp_replace(body,
        '(FROM|JOIN) (waitlist|waitlist_archive)[.]([a-z_]+) ([a-z]+)([[:space:]])',
        '\1 (SELECT * FROM \2.\3 WHERE resource_id OPERATOR(pg_catalog.=) ANY (resources)) \4\5 ', 'g');
    EXECUTE $create$
        CREATE FUNCTION waitlist.check_resource(for_resource pg_catalog.text, fifo_window interval,
                                                OUT invariant pg_catalog.text,
                                                OUT resource_id pg_catalog.text,
                                                OUT entity pg_catalog.text,
                                                OUT entity_id bigint,
                                                OUT detail pg_catalog.text)
        RETURNS SETOF record
        LANGUAGE plpgsql
        STABLE
        SECURITY DEFINER
        AS $create$ OPERATOR(pg_catalog.||) pg_catalog.quote_literal(body);
    -- and the settings of waitlist_check(), as they are
    FOR setting IN
        SELECT pg_catalog.unnest(p.proconfig) FROM pg_catalog.pg_proc p
         WHERE p.oid OPERATOR(pg_catalog.=)
               '@extschema@.waitlist_check(pg_catalog.text, interval)'::pg_catalog.regprocedure
    LOOP
        EXECUTE 'ALTER FUNCTION waitlist.check_resource(pg_catalog.text, interval) SET '
                OPERATOR(pg_catalog.||) pg_catalog.regexp_replace(setting, '=', ' = ');
    END LOOP;
END
$make_check_resource$;
COMMENT ON FUNCTION waitlist.check_resource(pg_catalog.text, interval) IS 'waitlist_check() of one resource, each query naming the resource in every table it reads, as Citus routes it (internal)';

/*
 * The promotion workers of every node of a Citus cluster, from the
 * coordinator: waitlist_worker_status() of each node, with the node.  A
 * node that cannot be asked gives one row with its error.
 */
CREATE FUNCTION waitlist_cluster_worker_status(OUT node_name pg_catalog.text,
                                               OUT node_port integer,
                                               OUT worker integer,
                                               OUT pid integer,
                                               OUT resources_owned bigint,
                                               OUT last_wake pg_catalog.timestamptz,
                                               OUT events_processed bigint,
                                               OUT offers_made bigint,
                                               OUT offers_expired bigint,
                                               OUT last_error pg_catalog.text,
                                               OUT last_error_at pg_catalog.timestamptz,
                                               OUT rounds bigint)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $cluster_status$
BEGIN
    IF NOT waitlist.tables_distributed() THEN
        RAISE EXCEPTION 'waitlist_cluster_worker_status() needs a database distributed over Citus'
            USING ERRCODE := 'object_not_in_prerequisite_state',
                  HINT := 'On a single server, waitlist_worker_status() reports every promotion worker.';
    END IF;
    RETURN QUERY
    SELECT n.nodename, n.nodeport, s.*
      FROM pg_catalog.pg_dist_node n
      CROSS JOIN @extschema@.waitlist_worker_status() s
     WHERE n.groupid OPERATOR(pg_catalog.=) (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)
       AND n.noderole OPERATOR(pg_catalog.=) 'primary';
    RETURN QUERY
    SELECT w.nodename, w.nodeport, s.worker, s.pid, s.resources_owned, s.last_wake,
           s.events_processed, s.offers_made, s.offers_expired,
           CASE WHEN w.success THEN s.last_error ELSE w.result END,
           s.last_error_at, s.rounds
      FROM pg_catalog.run_command_on_workers(
               $q$SELECT coalesce(pg_catalog.json_agg(s), '[]') FROM @extschema@.waitlist_worker_status() s$q$) w
      LEFT JOIN LATERAL pg_catalog.json_to_recordset(
               CASE WHEN w.success THEN w.result::pg_catalog.json ELSE '[{}]' END)
           AS s(worker integer, pid integer, resources_owned bigint, last_wake pg_catalog.timestamptz,
                events_processed bigint, offers_made bigint, offers_expired bigint,
                last_error pg_catalog.text, last_error_at pg_catalog.timestamptz, rounds bigint) ON true
     ORDER BY 1, 2, 3;
END
$cluster_status$;
COMMENT ON FUNCTION waitlist_cluster_worker_status() IS 'on a Citus cluster: waitlist_worker_status() of every node, with the node';

/*
 * This node's sequences of unit ids and lease tokens, moved into the node's
 * own range: group g draws from g * 2^48 up, so that no two nodes draw the
 * same (a resource's units keep their ids when its shards move).  The row
 * ids come from waitlist.node_ids().  Idempotent: a sequence already in its
 * range keeps its place.
 */
CREATE FUNCTION waitlist.use_node_id_range()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $range$
DECLARE
    low bigint := (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)::bigint
                  OPERATOR(pg_catalog.*) 281474976710656;
    seq pg_catalog.regclass;
BEGIN
    IF low OPERATOR(pg_catalog.=) 0 THEN
        RETURN;
    END IF;
    FOREACH seq IN ARRAY ARRAY['waitlist.offer_unit_seq', 'waitlist.lease_token_seq']::pg_catalog.regclass[] LOOP
        IF coalesce((SELECT s.last_value FROM pg_catalog.pg_sequences s
                      WHERE pg_catalog.format('%I.%I', s.schemaname, s.sequencename)
                            OPERATOR(pg_catalog.=) seq::pg_catalog.text), 0) OPERATOR(pg_catalog.<) low THEN
            PERFORM pg_catalog.setval(seq, low, false);
        END IF;
    END LOOP;
END
$range$;
COMMENT ON FUNCTION waitlist.use_node_id_range() IS 'moves this node''s unit id and lease token sequences to the node''s own range of 2^48 (internal, for waitlist_distribute())';

-- the helpers of the functions made again, needed no more
DROP FUNCTION waitlist.execute_grantees(pg_catalog.regprocedure);
DROP FUNCTION waitlist.grant_execute(pg_catalog.regprocedure, pg_catalog.oid[]);

/*
 * Nothing is granted to PUBLIC: not the functions above, and not the
 * internal functions of schema waitlist, which 1.0 left with the default
 * EXECUTE for PUBLIC (unreachable without USAGE on the schema, now also not
 * granted).
 */
DO $revoke$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN SELECT d.objid::pg_catalog.regprocedure
             FROM pg_catalog.pg_depend d
             JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
             WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
               AND d.deptype OPERATOR(pg_catalog.=) 'e'
               AND e.extname OPERATOR(pg_catalog.=) 'waitlist'
             ORDER BY d.objid
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);
    END LOOP;
END
$revoke$;

/*
 * A GRANT or REVOKE run by an extension script is recorded in the
 * extension's initial privileges (pg_init_privs), which pg_dump leaves out
 * of a dump.  The EXECUTE grants DBAs gave, kept above for the functions made
 * again, would be lost by the next dump and restore: the routines' initial
 * privileges go back to those of a fresh install, the owner's alone.
 */
UPDATE pg_catalog.pg_init_privs ip
   SET initprivs = ARRAY(SELECT i FROM pg_catalog.unnest(ip.initprivs) i
                         WHERE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(ARRAY[i]) x
                                       WHERE x.grantee OPERATOR(pg_catalog.=) p.proowner))
  FROM pg_catalog.pg_proc p, pg_catalog.pg_depend d, pg_catalog.pg_extension e
 WHERE ip.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
   AND ip.objsubid OPERATOR(pg_catalog.=) 0
   AND p.oid OPERATOR(pg_catalog.=) ip.objoid
   AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
   AND d.objid OPERATOR(pg_catalog.=) p.oid
   AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
   AND d.refobjid OPERATOR(pg_catalog.=) e.oid
   AND d.deptype OPERATOR(pg_catalog.=) 'e'
   AND e.extname OPERATOR(pg_catalog.=) 'waitlist';
