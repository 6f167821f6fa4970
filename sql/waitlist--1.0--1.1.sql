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


/* ---- outbox: claims fair across channels ---- */


/* ---- capacity trigger ---- */


/* ---- pg_cron scheduling ---- */


/* ---- promotion workers and capacity events ---- */


/* ---- gate protocol and isolation levels ---- */


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
        ('app', 'FUNCTION', '@extschema@.waitlist_join(text, text, integer)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_leave(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_status(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_accept(bigint, text)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_decline(bigint)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_inbox(text, interval)', 'EXECUTE'),
        ('app', 'FUNCTION', '@extschema@.waitlist_offer_seen(bigint)', 'EXECUTE'),
        ('booking', 'FUNCTION', '@extschema@.waitlist_release(text, integer, text)', 'EXECUTE'),
        ('booking', 'FUNCTION', '@extschema@.waitlist_capacity_trigger()', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_claim(text, integer, interval, text[])', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_ack(bigint, bigint)', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_fail(bigint, bigint, text)', 'EXECUTE'),
        ('relay', 'FUNCTION', '@extschema@.waitlist_outbox_retry(bigint)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_promote(text, integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_sweep(integer)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_schedule_sweep(text)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_unschedule_sweep()', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_retry_event(text, text)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_outbox_retry(bigint)', 'EXECUTE'),
        ('admin', 'FUNCTION', '@extschema@.waitlist_set_channel_rate(text, double precision, integer)', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_status(bigint)', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_check(text, interval)', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_worker_status()', 'EXECUTE'),
        ('monitor', 'FUNCTION', '@extschema@.waitlist_metrics()', 'EXECUTE'),
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
                                CASE WHEN duty_object.object_type OPERATOR(pg_catalog.=) 'FUNCTION'
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
    rolename name;
BEGIN
    IF role IS NULL OR duty IS NULL THEN
        RAISE EXCEPTION 'role and duty must not be null'
            USING ERRCODE := 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM waitlist.duties() d
                   WHERE d.duty OPERATOR(pg_catalog.=) duty_check_arguments.duty) THEN
        RAISE EXCEPTION 'unknown waitlist duty "%"', duty
            USING ERRCODE := 'invalid_parameter_value',
                  DETAIL := 'The duties are app, booking, relay, admin and monitor.';
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
    rolename name := waitlist.duty_check_arguments(role, duty);
    p record;
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
COMMENT ON FUNCTION waitlist_grant(regrole, text) IS 'grants a role one duty (app, booking, relay, admin, monitor): the privileges listed by waitlist_duty_privileges()';

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
    rolename name := waitlist.duty_check_arguments(role, duty);
    kept text[];
    p record;
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
 * per-resource offer totals are one pass over waitlist.offer.
 */
CREATE INDEX capacity_event_processed_idx ON waitlist.capacity_event (processed_at)
    WHERE state OPERATOR(pg_catalog.=) 'PROCESSED';
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
       coalesce(o.accepted, 0) AS accepted,
       coalesce(o.declined, 0) AS declined,
       coalesce(o.expired, 0) AS expired,
       coalesce(o.expired_unseen, 0) AS expired_unseen,
       coalesce(o.booking_failures, 0) AS booking_failures,
       coalesce(ev.dead_events, 0) AS dead_events,
       coalesce(b.outbox_backlog, 0) AS outbox_backlog,
       b.outbox_oldest_seconds
FROM waitlist.resource r
LEFT JOIN (SELECT e.resource_id, pg_catalog.count(*) AS waiting
           FROM waitlist.entry e
           WHERE e.state OPERATOR(pg_catalog.=) 'WAITING'
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
                  pg_catalog.count(*) FILTER (WHERE f.state OPERATOR(pg_catalog.=) 'FAILED') AS booking_failures
           FROM waitlist.offer f
           GROUP BY f.resource_id) o
       ON o.resource_id OPERATOR(pg_catalog.=) r.resource_id
LEFT JOIN (SELECT x.resource_id, pg_catalog.count(*) AS outbox_backlog,
                  pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(x.created_at)) AS outbox_oldest_seconds
           FROM waitlist.outbox x
           WHERE x.state OPERATOR(pg_catalog.=) 'PENDING'
           GROUP BY x.resource_id) b
       ON b.resource_id OPERATOR(pg_catalog.=) r.resource_id;
COMMENT ON VIEW waitlist.resource_stats IS 'per resource: line, pending and dead capacity events, offers by outcome, free units, outbox backlog';

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
    result text;
BEGIN
    BEGIN
        PERFORM 1 FROM waitlist.worker_status();
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        workers_loaded := false;
    END;

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
        (26, 'waitlist_worker_last_error_timestamp_seconds', 'gauge', 'When the promotion worker last failed, as a Unix time.')
        ) AS f(ord, name, kind, help)
    ), rs AS MATERIALIZED (
        SELECT s.*, pg_catalog.format('resource="%s"', waitlist.prometheus_label(s.resource_id)) AS label
        FROM waitlist.resource_stats s
    ), os AS MATERIALIZED (
        SELECT s.*, pg_catalog.format('resource="%s",channel="%s"',
                                      waitlist.prometheus_label(s.resource_id), s.channel) AS label
        FROM waitlist.outbox_stats s
    ), ls AS MATERIALIZED (
        SELECT s.*, CASE WHEN s.channel IS NULL THEN ''
                         ELSE pg_catalog.format('channel="%s",', s.channel) END AS label
        FROM waitlist.lag_stats s
    ), ws AS MATERIALIZED (
        SELECT s.*, pg_catalog.format('worker="%s"', s.worker) AS label
        FROM waitlist.worker_status() s
        WHERE workers_loaded
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
            ('waitlist_booking_failures_total', rs.booking_failures::pg_catalog.float8)) AS v(name, value)
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
          WHERE workers_loaded OR NOT pg_catalog.starts_with(f.name, 'waitlist_worker_')) b;
    RETURN result;
END
$metrics$;
COMMENT ON FUNCTION waitlist_metrics() IS 'the waitlist''s metrics and the promotion workers'' counters in the Prometheus text exposition format';

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
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$revoke$;
