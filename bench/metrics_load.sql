-- bench/metrics_load.sql: scenario 11's resources and lines, set-based, as
-- the owner (psql -v prefix=P -v resources=R -v entries=N).  R resources
-- (offer TTL one hour) share N entries round robin, in the mix the metrics
-- views meet in production: 60 % WAITING; 10 % OFFERED, each with its OPEN
-- offer made in the last 25 minutes, the capacity event that released its
-- unit (processed) and its offer_created outbox row (PENDING for half of
-- them, DELIVERED a second later for the other half: the recent ones fill
-- lag_stats' five-minute window); 10 % each ACCEPTED (with the accept
-- request and the processed capacity event), DECLINED and EXPIRED, their
-- offers made over the last two days and their outbox rows DELIVERED.  The
-- audit trail has each entry's and offer's transitions.  It is loaded as
-- bench/aged_load.sql loads (a superuser with session_replication_role =
-- replica: no foreign key checks, the trail is the rows given here), and
-- the units add up for waitlist_check() (every capacity event's unit is
-- held by an OPEN offer or consumed by an ACCEPTED one; no free units).
\set ON_ERROR_STOP 1
SET session_replication_role = replica;
SET synchronous_commit = off;
SELECT count(waitlist_create_resource(:'prefix' || '-' || r, '1 hour'))
FROM generate_series(0, :resources - 1) r;

BEGIN;
-- kind g % 10: 0-5 WAITING, 6 OFFERED, 7 ACCEPTED, 8 DECLINED, 9 EXPIRED;
-- terminal offers were made at c = 61 minutes to two days ago
INSERT INTO waitlist.entry (resource_id, user_id, state, joined_at, updated_at, rank_key)
SELECT :'prefix' || '-' || (g % :resources), 'u' || g, s.state,
       s.at - interval '1 day', s.at, 0
FROM generate_series(1, :entries) g
CROSS JOIN LATERAL (SELECT CASE WHEN g % 10 < 6 THEN 'WAITING'
                                WHEN g % 10 = 6 THEN 'OFFERED'
                                WHEN g % 10 = 7 THEN 'ACCEPTED'
                                WHEN g % 10 = 8 THEN 'DECLINED'
                                ELSE 'EXPIRED' END AS state,
                           CASE WHEN g % 10 < 6 THEN now() - (g % 86400) * interval '1 second'
                                WHEN g % 10 = 6 THEN now() - ((g / 10) % 1500) * interval '1 second'
                                ELSE now() - ((g / 10) % 2880 + 61) * interval '1 minute' END AS at) s;

-- updated_at is when the entry was offered (OFFERED) or the offer made
INSERT INTO waitlist.offer (entry_id, resource_id, user_id, state, created_at, expires_at,
                            decided_at, reservation_ref, idempotency_key)
SELECT e.entry_id, e.resource_id, e.user_id, o.state,
       e.updated_at, e.updated_at + interval '1 hour',
       CASE o.state WHEN 'OPEN' THEN NULL
                    WHEN 'EXPIRED' THEN e.updated_at + interval '1 hour'
                    ELSE e.updated_at + interval '5 minutes' END,
       CASE WHEN e.state = 'ACCEPTED' THEN 'ref-' || e.entry_id END,
       CASE WHEN e.state = 'ACCEPTED' THEN 'k-' || e.entry_id END
FROM waitlist.entry e
CROSS JOIN LATERAL (SELECT CASE e.state WHEN 'OFFERED' THEN 'OPEN' ELSE e.state END AS state) o
WHERE e.resource_id LIKE :'prefix' || '-%' AND e.state <> 'WAITING'
ORDER BY e.entry_id;

INSERT INTO waitlist.transition (entity, entity_id, resource_id, from_state, to_state,
                                 reason, rule_version, actor, at)
SELECT 'entry', e.entry_id, e.resource_id, NULL, 'WAITING', 'joined', 'priority-fifo/1',
       current_user, e.joined_at
FROM waitlist.entry e
WHERE e.resource_id LIKE :'prefix' || '-%'
ORDER BY e.entry_id;

INSERT INTO waitlist.transition (entity, entity_id, resource_id, from_state, to_state,
                                 reason, rule_version, actor, at)
SELECT t.entity, t.id, o.resource_id, t.from_state, t.to_state, t.reason,
       'priority-fifo/1', current_user, t.at
FROM waitlist.offer o
CROSS JOIN LATERAL (VALUES
    ('entry', o.entry_id, 'WAITING', 'OFFERED', 'promoted', o.created_at),
    ('offer', o.offer_id, NULL, 'OPEN', 'promoted', o.created_at),
    ('offer', o.offer_id, 'OPEN', o.state, lower(o.state), o.decided_at),
    ('entry', o.entry_id, 'OFFERED', o.state, lower(o.state), o.decided_at))
    AS t(entity, id, from_state, to_state, reason, at)
WHERE o.resource_id LIKE :'prefix' || '-%' AND (o.state <> 'OPEN' OR t.at = o.created_at)
ORDER BY o.offer_id;

INSERT INTO waitlist.outbox (resource_id, entry_id, offer_id, user_id, channel, event_type,
                             payload, created_at, state, attempts, next_attempt_at, delivered_at)
SELECT o.resource_id, o.entry_id, o.offer_id, o.user_id, 'webhook', 'offer_created',
       jsonb_build_object('resource_id', o.resource_id, 'entry_id', o.entry_id,
                          'offer_id', o.offer_id, 'user_id', o.user_id, 'expires_at', o.expires_at),
       o.created_at, d.state, CASE d.state WHEN 'PENDING' THEN 0 ELSE 1 END, o.created_at,
       CASE d.state WHEN 'DELIVERED' THEN o.created_at + interval '1 second' END
FROM waitlist.offer o
CROSS JOIN LATERAL (SELECT CASE WHEN o.state = 'OPEN' AND (o.entry_id / 10) % 2 = 0 THEN 'PENDING'
                                ELSE 'DELIVERED' END AS state) d
WHERE o.resource_id LIKE :'prefix' || '-%'
ORDER BY o.offer_id;

INSERT INTO waitlist.accept_request (resource_id, offer_id, idempotency_key, state,
                                     reservation_ref, requested_at)
SELECT o.resource_id, o.offer_id, o.idempotency_key, 'ACCEPTED', o.reservation_ref, o.decided_at
FROM waitlist.offer o
WHERE o.resource_id LIKE :'prefix' || '-%' AND o.state = 'ACCEPTED';

INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity, state, received_at,
                                     processed_at, attempts, next_attempt_at)
SELECT o.resource_id, 'cap-' || o.offer_id, 1, 'PROCESSED', o.created_at - interval '500 milliseconds',
       o.created_at, 1, o.created_at - interval '500 milliseconds'
FROM waitlist.offer o
WHERE o.resource_id LIKE :'prefix' || '-%' AND o.state IN ('OPEN', 'ACCEPTED');

UPDATE waitlist.resource r
SET units_released = r.units_released + c.n
FROM (SELECT resource_id, count(*) AS n FROM waitlist.capacity_event
      WHERE resource_id LIKE :'prefix' || '-%' GROUP BY resource_id) c
WHERE r.resource_id = c.resource_id;
COMMIT;
