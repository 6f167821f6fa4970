/* waitlist--1.0.sql: install script for the waitlist extension */

\echo Use "CREATE EXTENSION waitlist" to load this file. \quit

/*
 * Tables live in the schema "waitlist"; the API functions live in the schema
 * the extension is created in (public by default) so that applications can
 * call them with the default search_path.
 *
 * Sharding: every unique key and hot-path index leads with resource_id, FIFO
 * order is per resource (priority, seq), and nothing relies on ids being
 * comparable across resources, so resources can be spread over nodes.
 */
CREATE SCHEMA waitlist;
REVOKE ALL ON SCHEMA waitlist FROM PUBLIC;
COMMENT ON SCHEMA waitlist IS 'tables of the waitlist extension; use the waitlist_* functions to change them';

CREATE TABLE waitlist.resource (
    resource_id     text        NOT NULL,
    offer_ttl       interval    NOT NULL,
    max_waiting     bigint,
    booking_function regprocedure,
    free_units      bigint      NOT NULL DEFAULT 0,
    units_released  bigint      NOT NULL DEFAULT 0,
    channels        text[]      NOT NULL DEFAULT '{webhook}',
    wave_size       integer,
    wave_interval   interval,
    wave_started_at timestamptz,
    wave_offers     integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT resource_pkey PRIMARY KEY (resource_id),
    CONSTRAINT resource_channels_valid CHECK (pg_catalog.cardinality(channels) >= 1
        AND channels <@ '{email,sms,push,webhook}'::text[]),
    CONSTRAINT resource_waves_valid CHECK ((wave_size IS NULL) = (wave_interval IS NULL)
        AND wave_size > 0 AND wave_interval > interval '0'),
    CONSTRAINT resource_id_length CHECK (pg_catalog.octet_length(resource_id) BETWEEN 1 AND 200),
    CONSTRAINT resource_offer_ttl_positive CHECK (offer_ttl > interval '0'),
    CONSTRAINT resource_max_waiting_positive CHECK (max_waiting > 0),
    CONSTRAINT resource_free_units_nonnegative CHECK (free_units >= 0)
) WITH (fillfactor = 50);
COMMENT ON TABLE waitlist.resource IS 'one row per waitlisted thing; free_units is released capacity not yet offered';
-- the workers look for free units nobody took
CREATE INDEX resource_free_units_idx ON waitlist.resource (resource_id) WHERE free_units > 0;
COMMENT ON COLUMN waitlist.resource.units_released IS 'sum of the quantities of all capacity events; units held, consumed and retired are counted from waitlist.offer (OPEN, ACCEPTED, FAILED)';
COMMENT ON COLUMN waitlist.resource.channels IS 'notification channels: each outbox event is written once per channel';
COMMENT ON COLUMN waitlist.resource.wave_size IS 'with wave_interval: at most wave_size offers per wave_interval, in line order across waves';
COMMENT ON COLUMN waitlist.resource.booking_function IS 'f(resource_id text, user_id text, offer_id bigint, idempotency_key text) RETURNS text, called by waitlist_accept() in the caller''s context';

CREATE SEQUENCE waitlist.entry_seq;

/*
 * No foreign key to waitlist.resource: the key check would take FOR KEY SHARE
 * on the resource row for every join, i.e. write the hot concert's row 200,000
 * times.  waitlist_join() checks that the resource exists instead, and there
 * is no way to delete a resource that still has entries.
 */
CREATE TABLE waitlist.entry (
    entry_id    bigint      GENERATED ALWAYS AS IDENTITY,
    resource_id text        NOT NULL,
    user_id     text        NOT NULL,
    state       text        NOT NULL DEFAULT 'WAITING',
    priority    integer     NOT NULL DEFAULT 0,
    seq         bigint      NOT NULL DEFAULT pg_catalog.nextval('waitlist.entry_seq'),
    joined_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT entry_pkey PRIMARY KEY (resource_id, entry_id),
    CONSTRAINT entry_state_valid CHECK (state IN ('WAITING', 'OFFERED', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'CANCELLED')),
    CONSTRAINT entry_user_id_length CHECK (pg_catalog.octet_length(user_id) BETWEEN 1 AND 200)
) WITH (fillfactor = 80);
COMMENT ON TABLE waitlist.entry IS 'one row per (resource, user) attempt; state follows WAITING -> OFFERED -> ACCEPTED / DECLINED / EXPIRED, or CANCELLED';

-- ids are handed out by this node's sequences; lookups by id alone use this
CREATE INDEX entry_entry_id_idx ON waitlist.entry (entry_id);
-- a double tap can never make two active entries
CREATE UNIQUE INDEX entry_active_user_key ON waitlist.entry (resource_id, user_id)
    WHERE state IN ('WAITING', 'OFFERED');
-- the line itself: the next waiter is the first index entry, never a sort
CREATE INDEX entry_line_idx ON waitlist.entry (resource_id, priority DESC, seq)
    WHERE state = 'WAITING';

CREATE TABLE waitlist.offer (
    offer_id        bigint      GENERATED ALWAYS AS IDENTITY,
    entry_id        bigint      NOT NULL,
    resource_id     text        NOT NULL,
    user_id         text        NOT NULL,
    state           text        NOT NULL DEFAULT 'OPEN',
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at      timestamptz NOT NULL,
    decided_at      timestamptz,
    seen_at         timestamptz,
    reservation_ref text,
    idempotency_key text,
    CONSTRAINT offer_pkey PRIMARY KEY (resource_id, offer_id),
    CONSTRAINT offer_entry_fkey FOREIGN KEY (resource_id, entry_id) REFERENCES waitlist.entry (resource_id, entry_id),
    CONSTRAINT offer_state_valid CHECK (state IN ('OPEN', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'REVOKED', 'FAILED')),
    CONSTRAINT offer_decided CHECK ((state = 'OPEN') = (decided_at IS NULL))
) WITH (fillfactor = 80);
COMMENT ON TABLE waitlist.offer IS 'a time-limited claim on one released unit of capacity, made to one entry';

CREATE INDEX offer_offer_id_idx ON waitlist.offer (offer_id);
-- at most one open offer per entry, whatever races happen
CREATE UNIQUE INDEX offer_one_open_per_entry_key ON waitlist.offer (resource_id, entry_id)
    WHERE state = 'OPEN';
-- the expiry sweep and the worker look for the earliest deadlines
CREATE INDEX offer_open_deadline_idx ON waitlist.offer (expires_at, resource_id)
    WHERE state = 'OPEN';
-- an entry is accepted at most once, however many offers it had
CREATE UNIQUE INDEX offer_accepted_once_key ON waitlist.offer (resource_id, entry_id)
    WHERE state = 'ACCEPTED';

/*
 * One row per accept request (offer, idempotency key) that reached an
 * outcome.  The primary key is what makes accept idempotent: a second
 * request with the same key waits on the first one's index entry and then
 * returns its stored outcome, so the booking function runs once.
 */
CREATE TABLE waitlist.accept_request (
    resource_id     text        NOT NULL,
    offer_id        bigint      NOT NULL,
    idempotency_key text        NOT NULL,
    state           text,
    reservation_ref text,
    requested_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT accept_request_pkey PRIMARY KEY (resource_id, offer_id, idempotency_key),
    CONSTRAINT accept_request_state_valid CHECK (state IN ('ACCEPTED', 'FAILED'))
);
COMMENT ON TABLE waitlist.accept_request IS 'outcome of each accept request, by offer and idempotency key';

CREATE TABLE waitlist.capacity_event (
    resource_id     text        NOT NULL,
    event_id        text        NOT NULL,
    quantity        integer     NOT NULL,
    state           text        NOT NULL DEFAULT 'PENDING',
    received_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    processed_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_error      text,
    CONSTRAINT capacity_event_pkey PRIMARY KEY (resource_id, event_id),
    CONSTRAINT capacity_event_quantity_positive CHECK (quantity > 0),
    CONSTRAINT capacity_event_id_length CHECK (pg_catalog.octet_length(event_id) BETWEEN 1 AND 200),
    CONSTRAINT capacity_event_state_valid CHECK (state IN ('PENDING', 'PROCESSED', 'DEAD')),
    CONSTRAINT capacity_event_processed CHECK ((state = 'PROCESSED') = (processed_at IS NOT NULL))
);
COMMENT ON TABLE waitlist.capacity_event IS 'the CapacityReleased inbox; an event id counts once per resource; PENDING events wait for a promotion worker';
-- the workers' queue of events to fold
CREATE INDEX capacity_event_pending_idx ON waitlist.capacity_event (next_attempt_at, resource_id)
    WHERE state = 'PENDING';
CREATE INDEX capacity_event_event_id_idx ON waitlist.capacity_event (event_id);

CREATE TABLE waitlist.outbox (
    outbox_id        bigint      GENERATED ALWAYS AS IDENTITY,
    resource_id      text        NOT NULL,
    entry_id         bigint,
    offer_id         bigint,
    user_id          text,
    channel          text        NOT NULL DEFAULT 'webhook',
    event_type       text        NOT NULL,
    payload          jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    state            text        NOT NULL DEFAULT 'PENDING',
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    lease_owner      text,
    lease_token      bigint,
    lease_expires_at timestamptz,
    delivered_at     timestamptz,
    last_error       text,
    CONSTRAINT outbox_pkey PRIMARY KEY (resource_id, outbox_id),
    CONSTRAINT outbox_channel_valid CHECK (channel IN ('email', 'sms', 'push', 'webhook')),
    CONSTRAINT outbox_state_valid CHECK (state IN ('PENDING', 'DELIVERED', 'DEAD'))
) WITH (fillfactor = 80);
COMMENT ON TABLE waitlist.outbox IS 'notification hand-off rows, written in the transaction that made the change; relays claim, ack and fail them';
CREATE INDEX outbox_offer_idx ON waitlist.outbox (resource_id, offer_id);
CREATE INDEX outbox_outbox_id_idx ON waitlist.outbox (outbox_id);
-- what relays may claim next, oldest first
CREATE INDEX outbox_pending_idx ON waitlist.outbox (outbox_id) INCLUDE (resource_id)
    WHERE state = 'PENDING';
-- a user's rows per channel in creation order: the claim order, and the inbox
CREATE INDEX outbox_user_idx ON waitlist.outbox (user_id, channel, outbox_id) INCLUDE (resource_id, state);

CREATE SEQUENCE waitlist.lease_token_seq;

/* Token buckets that keep claims within each provider's rate. */
CREATE TABLE waitlist.channel (
    channel         text             NOT NULL,
    rate_per_second double precision,
    burst           integer,
    tokens          double precision NOT NULL DEFAULT 0,
    refilled_at     timestamptz      NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT channel_pkey PRIMARY KEY (channel),
    CONSTRAINT channel_rate_positive CHECK (rate_per_second > 0),
    CONSTRAINT channel_burst_positive CHECK (burst > 0)
);
COMMENT ON TABLE waitlist.channel IS 'per-channel rate limit (token bucket); NULL rate_per_second means unlimited';
INSERT INTO waitlist.channel (channel) VALUES ('email'), ('sms'), ('push'), ('webhook');

CREATE TABLE waitlist.transition (
    transition_id  bigint      GENERATED ALWAYS AS IDENTITY,
    entity         text        NOT NULL,
    entity_id      bigint      NOT NULL,
    resource_id    text        NOT NULL,
    from_state     text,
    to_state       text        NOT NULL,
    reason         text        NOT NULL,
    rule_version   text        NOT NULL,
    actor          name        NOT NULL,
    at             timestamptz NOT NULL DEFAULT pg_catalog.now(),
    transaction_id xid8        NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    CONSTRAINT transition_pkey PRIMARY KEY (resource_id, transition_id),
    CONSTRAINT transition_entity_valid CHECK (entity IN ('entry', 'offer'))
);
COMMENT ON TABLE waitlist.transition IS 'append-only audit log: one row per state change of an entry or offer';
CREATE INDEX transition_entity_idx ON waitlist.transition (resource_id, entity, entity_id, transition_id);

/* The audit log is append-only: UPDATE, DELETE and TRUNCATE fail. */
CREATE FUNCTION waitlist.transition_append_only()
RETURNS trigger
AS 'MODULE_PATHNAME', 'waitlist_transition_append_only'
LANGUAGE C;

CREATE TRIGGER transition_no_update_delete
    BEFORE UPDATE OR DELETE ON waitlist.transition
    FOR EACH ROW EXECUTE FUNCTION waitlist.transition_append_only();
CREATE TRIGGER transition_no_truncate
    BEFORE TRUNCATE ON waitlist.transition
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.transition_append_only();

/*
 * Every state change of an entry or an offer, made by the API or by hand,
 * writes its transition rows through this one trigger function, in the same
 * statement and so the same transaction.
 */
CREATE FUNCTION waitlist.record_transitions()
RETURNS trigger
AS 'MODULE_PATHNAME', 'waitlist_record_transitions'
LANGUAGE C;

CREATE TRIGGER entry_insert_audit
    AFTER INSERT ON waitlist.entry
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.record_transitions('entry');
CREATE TRIGGER entry_update_audit
    AFTER UPDATE ON waitlist.entry
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.record_transitions('entry');
CREATE TRIGGER offer_insert_audit
    AFTER INSERT ON waitlist.offer
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.record_transitions('offer');
CREATE TRIGGER offer_update_audit
    AFTER UPDATE ON waitlist.offer
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist.record_transitions('offer');

/* The promotion worker (0 .. nworkers-1) that owns a resource. */
CREATE FUNCTION waitlist.resource_worker(resource_id text, nworkers integer)
RETURNS integer
AS 'MODULE_PATHNAME', 'waitlist_resource_worker'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

/* API */

CREATE FUNCTION waitlist_create_resource(resource_id text,
                                         offer_ttl interval DEFAULT '15 minutes',
                                         max_waiting bigint DEFAULT NULL,
                                         booking_function regprocedure DEFAULT NULL,
                                         channels text[] DEFAULT NULL,
                                         wave_size integer DEFAULT NULL,
                                         wave_interval interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'waitlist_create_resource'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval) IS 'creates a waitlisted resource';

CREATE FUNCTION waitlist_alter_resource(resource_id text,
                                        offer_ttl interval DEFAULT NULL,
                                        max_waiting bigint DEFAULT NULL,
                                        clear_max_waiting boolean DEFAULT false,
                                        booking_function regprocedure DEFAULT NULL,
                                        clear_booking_function boolean DEFAULT false,
                                        channels text[] DEFAULT NULL,
                                        wave_size integer DEFAULT NULL,
                                        wave_interval interval DEFAULT NULL,
                                        clear_waves boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'waitlist_alter_resource'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean) IS 'changes a resource''s settings; NULL keeps a setting as it is';

CREATE FUNCTION waitlist_join(resource_id text, user_id text, priority integer DEFAULT 0)
RETURNS bigint
AS 'MODULE_PATHNAME', 'waitlist_join'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_join(text, text, integer) IS 'puts a user in line (WAITING) and returns the entry id; idempotent while the entry is active';

CREATE FUNCTION waitlist_leave(entry_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_leave'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_leave(bigint) IS 'takes an entry out of line (CANCELLED); false if it had already left the line';

CREATE FUNCTION waitlist_status(entry_id bigint,
                                OUT state text,
                                OUT "position" bigint,
                                OUT offer_id bigint,
                                OUT offer_expires_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'waitlist_status'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_status(bigint) IS 'an entry''s state, its place in line and its open offer';

CREATE FUNCTION waitlist_release(resource_id text, quantity integer, event_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_release'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_release(text, integer, text) IS 'records a CapacityReleased event once per event id and promotes; false for a repeated event';

CREATE FUNCTION waitlist_promote(resource_id text, max_offers integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'waitlist_promote'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_promote(text, integer) IS 'offers free units to the next waiters, serialized per resource; returns the number of offers made';

CREATE FUNCTION waitlist_accept(offer_id bigint, idempotency_key text,
                                OUT state text, OUT reservation_ref text)
RETURNS record
AS 'MODULE_PATHNAME', 'waitlist_accept'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_accept(bigint, text) IS 'accepts an open offer, booking through the resource''s booking function; idempotent per key';

CREATE FUNCTION waitlist_decline(offer_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_decline'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_decline(bigint) IS 'declines an open offer; the unit goes to the next waiter; false if already declined';

CREATE FUNCTION waitlist_sweep(max_offers integer DEFAULT 1000)
RETURNS integer
AS 'MODULE_PATHNAME', 'waitlist_sweep'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_sweep(integer) IS 'expires open offers past their deadline and promotes the next waiters; returns the number expired';

CREATE FUNCTION waitlist_schedule_sweep(schedule text DEFAULT '* * * * *')
RETURNS bigint
AS 'MODULE_PATHNAME', 'waitlist_schedule_sweep'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_schedule_sweep(text) IS 'registers waitlist_sweep() as the pg_cron job "waitlist-sweep"; returns the job id';

CREATE FUNCTION waitlist_unschedule_sweep()
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_unschedule_sweep'
LANGUAGE C;
COMMENT ON FUNCTION waitlist_unschedule_sweep() IS 'removes the pg_cron job "waitlist-sweep"; false if there was none';

CREATE FUNCTION waitlist_retry_event(event_id text, resource_id text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'waitlist_retry_event'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_retry_event(text, text) IS 'puts a DEAD capacity event back in the workers'' queue; returns the number revived';

CREATE FUNCTION waitlist_worker_status(OUT worker integer,
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
COMMENT ON FUNCTION waitlist_worker_status() IS 'one row per promotion worker: pid, share, last wake-up and counters';

/*
 * Attach to the booking system's reservations table:
 *   CREATE TRIGGER ... AFTER UPDATE OR DELETE ON reservations FOR EACH ROW
 *   EXECUTE FUNCTION waitlist_capacity_trigger('resource column',
 *       'quantity column or a number', 'status column', 'cancelled value');
 */
CREATE FUNCTION waitlist_capacity_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'waitlist_capacity_trigger'
LANGUAGE C;
COMMENT ON FUNCTION waitlist_capacity_trigger() IS 'row trigger that releases a cancelled or deleted reservation''s capacity to the waitlist, once per row';

/*
 * The API runs its SQL as the extension's owner, so applications need EXECUTE
 * on the functions and no privileges on the tables.  EXECUTE is not granted
 * to PUBLIC: the DBA decides who may join, release and promote.
 */
REVOKE ALL ON FUNCTION waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_join(text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_leave(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_status(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_release(text, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_promote(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_accept(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_decline(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_sweep(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_schedule_sweep(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_unschedule_sweep() FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_capacity_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_retry_event(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_worker_status() FROM PUBLIC;

/* Notifications: the outbox consumer protocol, rate limits and the in-app inbox. */

CREATE FUNCTION waitlist_outbox_claim(consumer text,
                                      max_rows integer DEFAULT 100,
                                      lease interval DEFAULT '30 seconds',
                                      channels text[] DEFAULT NULL,
                                      OUT outbox_id bigint,
                                      OUT resource_id text,
                                      OUT user_id text,
                                      OUT channel text,
                                      OUT event_type text,
                                      OUT payload jsonb,
                                      OUT created_at timestamptz,
                                      OUT attempts integer,
                                      OUT lease_token bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'waitlist_outbox_claim'
LANGUAGE C CALLED ON NULL INPUT ROWS 100;
COMMENT ON FUNCTION waitlist_outbox_claim(text, integer, interval, text[]) IS 'leases deliverable outbox rows to a relay, within each channel''s rate limit, oldest first and in order per user and channel';

CREATE FUNCTION waitlist_outbox_ack(outbox_id bigint, lease_token bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_outbox_ack'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_outbox_ack(bigint, bigint) IS 'marks a leased outbox row delivered; refuses a stale lease token';

CREATE FUNCTION waitlist_outbox_fail(outbox_id bigint, lease_token bigint, error text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_outbox_fail'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_outbox_fail(bigint, bigint, text) IS 'records a failed delivery: retried with backoff, dead-lettered after waitlist.outbox_max_attempts; true if dead-lettered';

CREATE FUNCTION waitlist_outbox_retry(outbox_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_outbox_retry'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_outbox_retry(bigint) IS 'puts a dead-lettered outbox row back for delivery; false if it was not dead';

CREATE FUNCTION waitlist_set_channel_rate(channel text,
                                          rate_per_second double precision,
                                          burst integer DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'waitlist_set_channel_rate'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_set_channel_rate(text, double precision, integer) IS 'sets a channel''s token bucket: rate per second and burst (default: one second''s worth); NULL rate means unlimited';

CREATE FUNCTION waitlist_inbox(user_id text,
                               since interval DEFAULT '7 days',
                               OUT resource_id text,
                               OUT entry_id bigint,
                               OUT offer_id bigint,
                               OUT kind text,
                               OUT state text,
                               OUT expires_at timestamptz,
                               OUT seen_at timestamptz,
                               OUT at timestamptz,
                               OUT payload jsonb)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'waitlist_inbox'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_inbox(text, interval) IS 'a fan''s open offers, then their recent events, newest first: the in-app inbox';

CREATE FUNCTION waitlist_offer_seen(offer_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'waitlist_offer_seen'
LANGUAGE C CALLED ON NULL INPUT;
COMMENT ON FUNCTION waitlist_offer_seen(bigint) IS 'records when the fan first saw an offer; false if it was seen before';

/* Offers per resource by outcome, and how many expired without being seen. */
CREATE VIEW waitlist.offer_outcomes AS
SELECT o.resource_id,
       pg_catalog.count(*) AS offers,
       pg_catalog.count(*) FILTER (WHERE o.state = 'OPEN') AS open,
       pg_catalog.count(*) FILTER (WHERE o.state = 'ACCEPTED') AS accepted,
       pg_catalog.count(*) FILTER (WHERE o.state = 'DECLINED') AS declined,
       pg_catalog.count(*) FILTER (WHERE o.state = 'EXPIRED') AS expired,
       pg_catalog.count(*) FILTER (WHERE o.state = 'EXPIRED' AND o.seen_at IS NULL) AS expired_unseen,
       pg_catalog.count(*) FILTER (WHERE o.seen_at IS NOT NULL) AS seen,
       pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY pg_catalog.date_part('epoch', o.seen_at - o.created_at))
           FILTER (WHERE o.seen_at IS NOT NULL) AS median_seconds_to_seen
FROM waitlist.offer o
GROUP BY o.resource_id;
COMMENT ON VIEW waitlist.offer_outcomes IS 'offers per resource by outcome; expired_unseen counts offers that expired before the fan saw them';

REVOKE ALL ON FUNCTION waitlist_outbox_claim(text, integer, interval, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_outbox_ack(bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_outbox_fail(bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_outbox_retry(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_set_channel_rate(text, double precision, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_inbox(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION waitlist_offer_seen(bigint) FROM PUBLIC;

/*
 * waitlist_check(): the guarantees, checked.  One row per violated invariant,
 * none when all hold.  Pass for_resource to check one resource (cheap, all
 * index lookups), or NULL for all.  Read-only; safe on a live system.
 *
 * "idle_unit_while_waiting" is a liveness property: it holds once the system
 * is quiet (workers drained, no transaction in flight), not necessarily at
 * every instant.  "fifo_order" is checked exactly when track_commit_timestamp
 * is on (commit times tell what each promotion could see); without it, only
 * pass-overs that leave no doubt (more than a second apart) are reported.
 */
CREATE FUNCTION waitlist_check(for_resource text DEFAULT NULL,
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
AS $check$
#variable_conflict use_column
DECLARE
    resources text[];
    exact_fifo boolean := pg_catalog.current_setting('track_commit_timestamp')::boolean;
BEGIN
    IF for_resource IS NULL THEN
        SELECT pg_catalog.array_agg(r.resource_id) INTO resources FROM waitlist.resource r;
    ELSE
        resources := ARRAY[for_resource];
    END IF;
    resources := coalesce(resources, '{}');

    -- capacity: every released unit is free, held, consumed or retired
    RETURN QUERY
    SELECT 'capacity_conserved', r.resource_id, 'resource', NULL::bigint,
           pg_catalog.format('released %s <> free %s + open %s + accepted %s + failed %s',
                             r.units_released, r.free_units, c.open, c.accepted, c.failed)
    FROM waitlist.resource r
    CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) FILTER (WHERE o.state = 'OPEN') AS open,
               pg_catalog.count(*) FILTER (WHERE o.state = 'ACCEPTED') AS accepted,
               pg_catalog.count(*) FILTER (WHERE o.state = 'FAILED') AS failed
        FROM waitlist.offer o WHERE o.resource_id = r.resource_id) c
    WHERE r.resource_id = ANY (resources)
      AND (r.units_released <> r.free_units + c.open + c.accepted + c.failed OR r.free_units < 0);

    -- every released unit was counted once: processed events add up
    RETURN QUERY
    SELECT 'events_accounted', r.resource_id, 'resource', NULL::bigint,
           pg_catalog.format('units_released %s <> processed events %s', r.units_released, e.units)
    FROM waitlist.resource r
    CROSS JOIN LATERAL (
        SELECT coalesce(pg_catalog.sum(ev.quantity), 0) AS units
        FROM waitlist.capacity_event ev
        WHERE ev.resource_id = r.resource_id AND ev.state = 'PROCESSED') e
    WHERE r.resource_id = ANY (resources) AND r.units_released <> e.units;

    RETURN QUERY
    SELECT 'event_not_dead', ev.resource_id, 'capacity_event', NULL::bigint,
           pg_catalog.format('event %s is DEAD after %s attempts: %s', ev.event_id, ev.attempts, ev.last_error)
    FROM waitlist.capacity_event ev
    WHERE ev.resource_id = ANY (resources) AND ev.state = 'DEAD';

    -- offers and entries agree
    RETURN QUERY
    SELECT 'one_open_offer_per_entry', o.resource_id, 'entry', o.entry_id,
           pg_catalog.format('%s open offers', pg_catalog.count(*))
    FROM waitlist.offer o
    WHERE o.resource_id = ANY (resources) AND o.state = 'OPEN'
    GROUP BY o.resource_id, o.entry_id HAVING pg_catalog.count(*) > 1;

    RETURN QUERY
    SELECT 'offered_entry_has_open_offer', e.resource_id, 'entry', e.entry_id,
           'entry is OFFERED without an open offer'
    FROM waitlist.entry e
    WHERE e.resource_id = ANY (resources) AND e.state = 'OFFERED'
      AND NOT EXISTS (SELECT 1 FROM waitlist.offer o
                      WHERE o.resource_id = e.resource_id AND o.entry_id = e.entry_id AND o.state = 'OPEN');

    RETURN QUERY
    SELECT 'offer_matches_entry', o.resource_id, 'offer', o.offer_id,
           pg_catalog.format('offer is %s but its entry %s is %s', o.state, e.entry_id, e.state)
    FROM waitlist.offer o
    JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
    WHERE o.resource_id = ANY (resources)
      AND ((o.state = 'OPEN' AND e.state <> 'OFFERED')
        OR (o.state = 'ACCEPTED' AND e.state <> 'ACCEPTED')
        OR (o.state = 'DECLINED' AND e.state <> 'DECLINED')
        OR (o.state = 'EXPIRED' AND e.state <> 'EXPIRED')
        OR (o.state = 'REVOKED' AND e.state <> 'CANCELLED'));

    RETURN QUERY
    SELECT 'one_active_entry_per_user', e.resource_id, 'entry', pg_catalog.min(e.entry_id),
           pg_catalog.format('user %s has %s active entries', e.user_id, pg_catalog.count(*))
    FROM waitlist.entry e
    WHERE e.resource_id = ANY (resources) AND e.state IN ('WAITING', 'OFFERED')
    GROUP BY e.resource_id, e.user_id HAVING pg_catalog.count(*) > 1;

    -- the audit trail explains every current state
    RETURN QUERY
    WITH states AS (
        SELECT 'entry'::text AS entity, e.resource_id, e.entry_id AS entity_id, e.state, 'WAITING'::text AS initial
        FROM waitlist.entry e WHERE e.resource_id = ANY (resources)
        UNION ALL
        SELECT 'offer', o.resource_id, o.offer_id, o.state, 'OPEN'
        FROM waitlist.offer o WHERE o.resource_id = ANY (resources)
    ), chains AS (
        SELECT s.*, t.transition_id, t.from_state, t.to_state,
               pg_catalog.lag(t.to_state) OVER w AS previous_to,
               pg_catalog.row_number() OVER w AS n,
               pg_catalog.row_number() OVER (PARTITION BY s.entity, s.resource_id, s.entity_id
                                             ORDER BY t.transition_id DESC) AS n_from_end
        FROM states s
        LEFT JOIN waitlist.transition t
          ON t.resource_id = s.resource_id AND t.entity = s.entity AND t.entity_id = s.entity_id
        WINDOW w AS (PARTITION BY s.entity, s.resource_id, s.entity_id ORDER BY t.transition_id)
    )
    SELECT v.invariant, c.resource_id, c.entity, c.entity_id, v.detail
    FROM chains c
    CROSS JOIN LATERAL (VALUES
        ('state_has_audit_trail', c.transition_id IS NULL,
         pg_catalog.format('%s has no transition rows', c.state)),
        ('audit_starts_at_initial_state',
         c.n = 1 AND c.transition_id IS NOT NULL AND (c.from_state IS NOT NULL OR c.to_state <> c.initial),
         pg_catalog.format('first transition is %s -> %s', coalesce(c.from_state, 'NULL'), c.to_state)),
        ('audit_chain_continuous',
         c.n > 1 AND c.from_state IS DISTINCT FROM c.previous_to,
         pg_catalog.format('transition %s starts at %s after %s', c.transition_id, c.from_state, c.previous_to)),
        ('state_matches_audit',
         c.n_from_end = 1 AND c.transition_id IS NOT NULL AND c.to_state <> c.state,
         pg_catalog.format('state %s, last transition to %s', c.state, c.to_state))
    ) AS v(invariant, violated, detail)
    WHERE v.violated;

    -- every offer was handed to the notifier
    RETURN QUERY
    SELECT 'offer_has_outbox_row', o.resource_id, 'offer', o.offer_id, 'no offer_created outbox row'
    FROM waitlist.offer o
    WHERE o.resource_id = ANY (resources)
      AND NOT EXISTS (SELECT 1 FROM waitlist.outbox b
                      WHERE b.resource_id = o.resource_id AND b.offer_id = o.offer_id
                        AND b.event_type = 'offer_created');

    -- liveness: no unit sits free while someone waits
    RETURN QUERY
    SELECT 'idle_unit_while_waiting', r.resource_id, 'resource', NULL::bigint,
           pg_catalog.format('%s free units and %s waiting', r.free_units,
                             (SELECT pg_catalog.count(*) FROM waitlist.entry e
                              WHERE e.resource_id = r.resource_id AND e.state = 'WAITING'))
    FROM waitlist.resource r
    WHERE r.resource_id = ANY (resources) AND r.free_units > 0
      -- a resource waiting for its next wave is throttled, not idle
      AND NOT (r.wave_size IS NOT NULL AND r.wave_offers >= r.wave_size
               AND r.wave_started_at + r.wave_interval > pg_catalog.now())
      AND EXISTS (SELECT 1 FROM waitlist.entry e WHERE e.resource_id = r.resource_id AND e.state = 'WAITING');

    /*
     * FIFO fairness: no offer went to an entry while an entry ahead of it in
     * line (priority DESC, seq) was waiting and visible to the promotion:
     * the waiter's move to WAITING committed before the promoting
     * transaction began, and its move out of WAITING began after that
     * transaction committed.  A transition row of the waiter written by the
     * promoting transaction itself would record a rule that allowed it.
     *
     * Promotions made within fifo_window are checked, each against the last
     * in line it offered to.  The waiters looked at are those still waiting
     * ahead of it (ranges of the line index) and those that left WAITING
     * after the promotion began, so the cost follows recent activity (the
     * number of promotions times the leaves in the window), not the length
     * of the history.
     */
    RETURN QUERY
    WITH made AS (
        SELECT t.resource_id, t.entity_id AS offer_id, e.entry_id, e.priority, e.seq,
               t.at AS began, t.transaction_id
        FROM waitlist.transition t
        JOIN waitlist.offer o ON o.resource_id = t.resource_id AND o.offer_id = t.entity_id
        JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
        WHERE t.resource_id = ANY (resources) AND t.entity = 'offer' AND t.from_state IS NULL
          AND t.at >= pg_catalog.now() - fifo_window
    ), promotions AS MATERIALIZED (
        -- one row per promoting transaction, with the last in line it offered to
        SELECT m.resource_id, m.transaction_id, pg_catalog.min(m.began) AS began,
               CASE WHEN exact_fifo
                    THEN pg_catalog.pg_xact_commit_timestamp(m.transaction_id::text::xid) END AS committed,
               (pg_catalog.array_agg(m.offer_id ORDER BY m.priority, m.seq DESC))[1] AS offer_id,
               (pg_catalog.array_agg(m.entry_id ORDER BY m.priority, m.seq DESC))[1] AS entry_id,
               (pg_catalog.array_agg(m.priority ORDER BY m.priority, m.seq DESC))[1] AS priority,
               (pg_catalog.array_agg(m.seq ORDER BY m.priority, m.seq DESC))[1] AS seq
        FROM made m
        GROUP BY m.resource_id, m.transaction_id
    ), recently_left AS MATERIALIZED (
        SELECT t.resource_id, t.entity_id AS entry_id, t.at AS left_at
        FROM waitlist.transition t
        WHERE t.resource_id = ANY (resources) AND t.entity = 'entry' AND t.from_state = 'WAITING'
          AND t.at >= pg_catalog.now() - fifo_window
    ), candidates AS (
        SELECT p.*, w.entry_id AS ahead_id
        FROM promotions p
        CROSS JOIN LATERAL (
            -- two ranges of the line index: higher priority, and same priority earlier
            SELECT a.entry_id FROM waitlist.entry a
            WHERE a.resource_id = p.resource_id AND a.state = 'WAITING' AND a.priority > p.priority
            UNION
            SELECT a.entry_id FROM waitlist.entry a
            WHERE a.resource_id = p.resource_id AND a.state = 'WAITING'
              AND a.priority = p.priority AND a.seq < p.seq
            UNION
            SELECT a.entry_id FROM recently_left r
            JOIN waitlist.entry a ON a.resource_id = r.resource_id AND a.entry_id = r.entry_id
            WHERE r.resource_id = p.resource_id AND r.left_at > p.began
              AND (a.priority > p.priority OR (a.priority = p.priority AND a.seq < p.seq))
        ) w
    )
    SELECT 'fifo_order', c.resource_id, 'offer', c.offer_id,
           pg_catalog.format('offered to entry %s while entry %s, ahead of it, was waiting',
                             c.entry_id, c.ahead_id)
    FROM candidates c
    CROSS JOIN LATERAL (
        -- the waiter's last move to WAITING before the promotion, and its next move
        SELECT t.at AS began, t.transaction_id,
               (SELECT n.at FROM waitlist.transition n
                WHERE n.resource_id = t.resource_id AND n.entity = 'entry' AND n.entity_id = t.entity_id
                  AND n.transition_id > t.transition_id
                ORDER BY n.transition_id LIMIT 1) AS left_at
        FROM waitlist.transition t
        WHERE t.resource_id = c.resource_id AND t.entity = 'entry' AND t.entity_id = c.ahead_id
          AND t.to_state = 'WAITING' AND t.at <= c.began
        ORDER BY t.transition_id DESC LIMIT 1
    ) w
    WHERE CASE WHEN exact_fifo AND c.committed IS NOT NULL
                    AND pg_catalog.pg_xact_commit_timestamp(w.transaction_id::text::xid) IS NOT NULL
               THEN pg_catalog.pg_xact_commit_timestamp(w.transaction_id::text::xid) < c.began
                    AND (w.left_at IS NULL OR w.left_at > c.committed)
               ELSE w.began + interval '1 second' < c.began
                    AND (w.left_at IS NULL OR w.left_at > c.began + interval '1 second')
          END
      AND NOT EXISTS (SELECT 1 FROM waitlist.transition x
                      WHERE x.resource_id = c.resource_id AND x.entity = 'entry'
                        AND x.entity_id = c.ahead_id AND x.transaction_id = c.transaction_id);
END
$check$;
COMMENT ON FUNCTION waitlist_check(text, interval) IS 'one row per violated invariant of the waitlist (capacity, states, audit trail, outbox, liveness, FIFO order); none when all hold';
REVOKE ALL ON FUNCTION waitlist_check(text, interval) FROM PUBLIC;
