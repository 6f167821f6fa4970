-- bench/setup.sql: helpers for bench/run, in the schema "bench" of the
-- benchmark database.  Run once, as a superuser, after CREATE EXTENSION.

-- the bulk loaders (bench.add_waiting, bench.add_resources)
\ir load.sql

-- Wait until the workers have folded every pending capacity event; returns
-- the seconds waited, or NULL after timeout seconds.
CREATE FUNCTION bench.wait_drained(timeout double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        IF NOT EXISTS (SELECT 1 FROM waitlist.capacity_event WHERE state = 'PENDING') THEN
            RETURN extract(epoch FROM clock_timestamp() - t0);
        END IF;
        IF clock_timestamp() > t0 + timeout * interval '1 second' THEN
            RETURN NULL;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
END
$$;

-- Wait until a resource has at least n offers; returns the seconds waited,
-- or NULL after timeout seconds.
CREATE FUNCTION bench.wait_offers(resource text, n bigint, timeout double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        IF (SELECT count(*) FROM waitlist.offer o WHERE o.resource_id = resource) >= n THEN
            RETURN extract(epoch FROM clock_timestamp() - t0);
        END IF;
        IF clock_timestamp() > t0 + timeout * interval '1 second' THEN
            RETURN NULL;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
END
$$;

-- Wait until no OPEN offer of the resources matching a LIKE pattern is
-- left; returns the seconds waited, or NULL after timeout seconds.
CREATE FUNCTION bench.wait_expired(pattern text, timeout double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        IF NOT EXISTS (SELECT 1 FROM waitlist.offer o
                       WHERE o.state = 'OPEN' AND o.resource_id LIKE pattern) THEN
            RETURN extract(epoch FROM clock_timestamp() - t0);
        END IF;
        IF clock_timestamp() > t0 + timeout * interval '1 second' THEN
            RETURN NULL;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

-- Give the OPEN offers of the resources matching a LIKE pattern deadlines
-- spread evenly (in random order) over [now + lead, now + lead + spread].
-- The UPDATE changes no state, so it writes no transition rows; it runs as
-- the loaders do (bench/load.sql), so that no by-hand check runs per row.
CREATE FUNCTION bench.stagger_deadlines(pattern text, lead interval, spread interval)
RETURNS bigint LANGUAGE sql
SET session_replication_role = replica
AS $$
    WITH o AS (
        SELECT resource_id, offer_id,
               row_number() OVER (ORDER BY random()) AS k,
               count(*) OVER () AS n
        FROM waitlist.offer
        WHERE state = 'OPEN' AND resource_id LIKE pattern),
    upd AS (
        UPDATE waitlist.offer x
        SET expires_at = clock_timestamp() + lead + spread * ((o.k - 1)::float8 / greatest(o.n - 1, 1))
        FROM o
        WHERE x.resource_id = o.resource_id AND x.offer_id = o.offer_id
        RETURNING 1)
    SELECT count(*) FROM upd
$$;

-- Delay from each offer's deadline to its EXPIRED transition, for the
-- resources matching a LIKE pattern: "at" is the expiring transaction's
-- start (now()), "committed" its commit (track_commit_timestamp).
CREATE FUNCTION bench.expiry_delays(pattern text,
                                    OUT offer_id bigint, OUT at_delay_s double precision,
                                    OUT commit_delay_s double precision)
RETURNS SETOF record LANGUAGE sql AS $$
    SELECT o.offer_id,
           extract(epoch FROM t.at - o.expires_at)::float8,
           extract(epoch FROM pg_xact_commit_timestamp(t.xmin) - o.expires_at)::float8
    FROM waitlist.offer o
    JOIN waitlist.transition t
      ON t.resource_id = o.resource_id AND t.entity = 'offer' AND t.entity_id = o.offer_id
     AND t.to_state = 'EXPIRED'
    WHERE o.resource_id LIKE pattern AND o.state = 'EXPIRED'
$$;

-- Scenario 1 baseline: a table with the same columns, defaults and indexes
-- as waitlist.entry (no triggers, no API).
CREATE TABLE bench.join_base (LIKE waitlist.entry INCLUDING DEFAULTS INCLUDING IDENTITY
                              INCLUDING CONSTRAINTS INCLUDING INDEXES);
-- Scenario 1b baseline: the same INSERT and its audit row in one statement
-- (bench/join_audited.sql), into a table with waitlist.transition's shape.
CREATE TABLE bench.join_audit (LIKE waitlist.transition INCLUDING DEFAULTS INCLUDING IDENTITY
                               INCLUDING CONSTRAINTS INCLUDING INDEXES);

-- Scenario 3 baseline: the textbook queue, same shapes and indexes as the
-- extension's entry and offer tables, without triggers, outbox or audit.
CREATE TABLE bench.base_entry (LIKE waitlist.entry INCLUDING DEFAULTS INCLUDING IDENTITY
                               INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE TABLE bench.base_offer (LIKE waitlist.offer INCLUDING DEFAULTS INCLUDING IDENTITY
                               INCLUDING CONSTRAINTS INCLUDING INDEXES);

-- Pop one WAITING row with FOR UPDATE SKIP LOCKED, mark it offered and
-- insert its offer; one transaction per offer.  Returns nothing; the
-- caller times the CALL.
CREATE PROCEDURE bench.textbook_promote(resource text, n integer)
LANGUAGE plpgsql AS $$
DECLARE
    e bigint;
    u text;
BEGIN
    FOR i IN 1 .. n LOOP
        SELECT entry_id, user_id INTO e, u
        FROM bench.base_entry
        WHERE resource_id = resource AND state = 'WAITING'
        ORDER BY priority DESC, seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        EXIT WHEN e IS NULL;
        UPDATE bench.base_entry SET state = 'OFFERED', updated_at = now()
        WHERE resource_id = resource AND entry_id = e;
        INSERT INTO bench.base_offer (entry_id, resource_id, user_id, expires_at)
        VALUES (e, resource, u, now() + interval '1 day');
        COMMIT;
    END LOOP;
END
$$;

-- Scenario 8 baseline: the rest of the textbook schema, same shapes and
-- indexes (and fill factors) as the extension's tables, without triggers.
-- A resource row, the capacity inbox, the outbox and the audit trail join
-- base_entry and base_offer above.
CREATE TABLE bench.base_resource (LIKE waitlist.resource INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                  INCLUDING INDEXES) WITH (fillfactor = 50);
CREATE TABLE bench.base_capacity_event (LIKE waitlist.capacity_event INCLUDING DEFAULTS
                                        INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE TABLE bench.base_outbox (LIKE waitlist.outbox INCLUDING DEFAULTS INCLUDING IDENTITY
                                INCLUDING CONSTRAINTS INCLUDING INDEXES) WITH (fillfactor = 80);
CREATE TABLE bench.base_transition (LIKE waitlist.transition INCLUDING DEFAULTS INCLUDING IDENTITY
                                    INCLUDING CONSTRAINTS INCLUDING INDEXES);

-- The textbook inline release, what a competent developer writes in plain
-- PL/pgSQL for waitlist_release(resource, units, event_id) in inline mode,
-- all in the caller's transaction: the event counts once per (resource,
-- event id); the resource row is locked and gets the units; while units
-- are free, the head of the line is popped FOR UPDATE SKIP LOCKED, marked
-- OFFERED, and gets its offer, one offer_created outbox row and the two
-- transition rows (entry, offer).  Returns the offers made.
CREATE FUNCTION bench.textbook_release(resource text, units integer, event text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    free bigint;
    ttl interval;
    e bigint;
    u text;
    o bigint;
    exp timestamptz;
    made integer := 0;
BEGIN
    INSERT INTO bench.base_capacity_event (resource_id, event_id, quantity, state, processed_at)
    VALUES (resource, event, units, 'PROCESSED', now())
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 0;                       -- a retried event counts once
    END IF;
    SELECT free_units + units, offer_ttl INTO free, ttl
    FROM bench.base_resource WHERE resource_id = resource
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resource "%" does not exist', resource;
    END IF;
    WHILE made < free LOOP
        SELECT entry_id, user_id INTO e, u
        FROM bench.base_entry
        WHERE resource_id = resource AND state = 'WAITING'
        ORDER BY priority DESC, seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        EXIT WHEN NOT FOUND;
        UPDATE bench.base_entry SET state = 'OFFERED', updated_at = now()
        WHERE resource_id = resource AND entry_id = e;
        exp := now() + ttl;
        INSERT INTO bench.base_offer (entry_id, resource_id, user_id, expires_at)
        VALUES (e, resource, u, exp)
        RETURNING offer_id INTO o;
        INSERT INTO bench.base_outbox (resource_id, entry_id, offer_id, user_id, event_type, payload)
        VALUES (resource, e, o, u, 'offer_created',
                jsonb_build_object('resource_id', resource, 'entry_id', e, 'offer_id', o,
                                   'user_id', u, 'expires_at', exp));
        INSERT INTO bench.base_transition (entity, entity_id, resource_id, from_state, to_state,
                                           reason, rule_version, actor)
        VALUES ('entry', e, resource, 'WAITING', 'OFFERED', 'promoted', 'textbook', current_user),
               ('offer', o, resource, NULL, 'OPEN', 'promoted', 'textbook', current_user);
        made := made + 1;
    END LOOP;
    UPDATE bench.base_resource
    SET free_units = free - made, units_released = units_released + units, updated_at = now()
    WHERE resource_id = resource;
    RETURN made;
END
$$;

-- Scenario 4: the commit of each release, by transaction id.
CREATE TABLE bench.lag_release (
    resource_id text NOT NULL,
    event_id    text NOT NULL,
    xid         xid8 NOT NULL
);

-- Promotion lag per release: from the commit of the release to the commit
-- of the worker transaction that folded its event and made its offer (the
-- capacity_event row's xmin after the fold; offers made in the same
-- transaction become visible with it).  made_offer says whether that
-- transaction made an offer for the resource.
CREATE FUNCTION bench.promotion_lags(OUT resource_id text, OUT lag_ms double precision,
                                     OUT made_offer boolean)
RETURNS SETOF record LANGUAGE sql AS $$
    SELECT l.resource_id,
           extract(epoch FROM pg_xact_commit_timestamp(ce.xmin)
                            - pg_xact_commit_timestamp(l.xid::text::xid))::float8 * 1000,
           EXISTS (SELECT 1 FROM waitlist.offer o
                   WHERE o.resource_id = ce.resource_id AND o.xmin = ce.xmin)
    FROM bench.lag_release l
    JOIN waitlist.capacity_event ce
      ON ce.resource_id = l.resource_id AND ce.event_id = l.event_id
    WHERE ce.state = 'PROCESSED'
$$;

-- Scenario 6: the open offers each accept script takes, in order.
CREATE TABLE bench.accept_queue (
    kind     text    NOT NULL,
    n        bigint  NOT NULL,
    offer_id bigint  NOT NULL,
    PRIMARY KEY (kind, n)
);
CREATE SEQUENCE bench.accept_single_seq;
CREATE SEQUENCE bench.accept_double_seq;
-- Scenario 12 takes its offers from bench.accept_queue too (kinds 'saga'
-- and 'booked').
CREATE SEQUENCE bench.accept_saga_seq;
CREATE SEQUENCE bench.accept_booked_seq;

-- Scenario 12's booking relay after the booking service answered 201 for
-- the row it claims: claim one booking row, confirm the offer it names and
-- ack it, in the caller's transaction.  A claim can find nothing while other relays
-- hold the rows of accepts it cannot see yet; like a relay's poll it then
-- claims again (a new snapshot each time), so each call completes exactly
-- one booking (bench.relay_empty_claims counts the claims repeated).
-- Returns the offer id.
CREATE SEQUENCE bench.relay_empty_claims;
CREATE FUNCTION bench.relay_booking()
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
    tries integer := 0;
BEGIN
    LOOP
        SELECT c.outbox_id, c.payload, c.lease_token INTO r
        FROM waitlist_outbox_claim('bench-relay', 1, '30 seconds', channels => '{booking}') c;
        EXIT WHEN FOUND;
        PERFORM nextval('bench.relay_empty_claims');
        tries := tries + 1;
        IF tries >= 100000 THEN
            RAISE EXCEPTION 'no booking row to claim after % tries', tries;
        END IF;
    END LOOP;
    PERFORM waitlist_booking_confirmed((r.payload->>'offer_id')::bigint, 'R-' || (r.payload->>'offer_id'));
    PERFORM waitlist_outbox_ack(r.outbox_id, r.lease_token);
    RETURN (r.payload->>'offer_id')::bigint;
END
$$;

-- Scenario 12's in-database booking: the least a booking function can do
-- (no inventory of its own), so that the baseline is the accept's own cost.
CREATE FUNCTION bench.book(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text
LANGUAGE sql
AS $$ SELECT 'R-' || offer_id $$;

-- Waiting depth over time of the resources matching a LIKE pattern, from
-- the audit trail (no sampling during the run): one row per bucket of
-- "step" seconds from t0 to t1, with the depth at the bucket's end (t_s
-- seconds after t0).  "at" is the changing transaction's start.
CREATE FUNCTION bench.depth_series(pattern text, t0 timestamptz, t1 timestamptz,
                                   step double precision,
                                   OUT t_s double precision, OUT waiting bigint)
RETURNS SETOF record LANGUAGE sql AS $$
    WITH per AS MATERIALIZED (
        SELECT greatest(-1, floor(extract(epoch FROM at - t0) / step))::int AS b,
               sum((to_state = 'WAITING')::int
                   - (from_state IS NOT DISTINCT FROM 'WAITING')::int) AS d
        FROM waitlist.transition
        WHERE entity = 'entry' AND resource_id LIKE pattern AND at <= t1
        GROUP BY 1),
    tot AS MATERIALIZED (
        SELECT b, sum(d) OVER (ORDER BY b) AS depth FROM per)
    SELECT (g + 1) * step,
           coalesce((SELECT tot.depth FROM tot WHERE tot.b <= g ORDER BY tot.b DESC LIMIT 1), 0)::bigint
    FROM generate_series(0, floor(extract(epoch FROM t1 - t0) / step)::int) g
    ORDER BY 1
$$;
