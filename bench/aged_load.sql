-- bench/aged_load.sql: scenario 10's history, set-based, as the owner
-- (psql -v res=RESOURCE -v entries=N).  Each of the N entries went the way
-- of a sold-out line 40 days ago: half ACCEPTED (its offer ACCEPTED, the
-- accept request, the processed capacity event that released its unit),
-- half EXPIRED (its offer EXPIRED); every offer has its delivered
-- offer_created outbox row, and the audit trail has the five transitions of
-- that history (entry: joined, promoted, accepted or expired; offer: made,
-- accepted or expired).  Nine rows per entry.  It is loaded the way a
-- restore loads, as a superuser with session_replication_role = replica:
-- the foreign key checks and the capacity_event_archived trigger are
-- skipped (the rows are consistent by construction, the archive is empty)
-- and the audit triggers leave the trail to the rows given here, which the
-- insert guard accepts from a superuser.  The units add up for
-- waitlist_check().
\set ON_ERROR_STOP 1
SET session_replication_role = replica;
SET synchronous_commit = off;
SELECT waitlist_create_resource(:'res', '1 day');

BEGIN;
INSERT INTO waitlist.entry (resource_id, user_id, state, joined_at, updated_at)
SELECT :'res', 'old' || g,
       CASE WHEN g % 2 = 0 THEN 'ACCEPTED' ELSE 'EXPIRED' END,
       now() - interval '41 days', now() - interval '40 days'
FROM generate_series(1, :entries) g;

INSERT INTO waitlist.offer (entry_id, resource_id, user_id, state, created_at, expires_at,
                            decided_at, reservation_ref, idempotency_key)
SELECT e.entry_id, e.resource_id, e.user_id, e.state,
       e.updated_at - interval '10 minutes',
       e.updated_at - interval '10 minutes' + interval '1 day',
       e.updated_at,
       CASE WHEN e.state = 'ACCEPTED' THEN 'ref-' || e.entry_id END,
       CASE WHEN e.state = 'ACCEPTED' THEN 'k-' || e.entry_id END
FROM waitlist.entry e
WHERE e.resource_id = :'res'
ORDER BY e.entry_id;

INSERT INTO waitlist.transition (entity, entity_id, resource_id, from_state, to_state,
                                 reason, rule_version, actor, at)
SELECT t.entity, t.id, o.resource_id, t.from_state, t.to_state, t.reason,
       'priority-fifo/1', current_user, t.at
FROM waitlist.offer o
CROSS JOIN LATERAL (VALUES
    ('entry', o.entry_id, NULL, 'WAITING', 'joined', o.created_at - interval '1 day'),
    ('entry', o.entry_id, 'WAITING', 'OFFERED', 'promoted', o.created_at),
    ('offer', o.offer_id, NULL, 'OPEN', 'promoted', o.created_at),
    ('offer', o.offer_id, 'OPEN', o.state, lower(o.state), o.decided_at),
    ('entry', o.entry_id, 'OFFERED', o.state, lower(o.state), o.decided_at))
    AS t(entity, id, from_state, to_state, reason, at)
WHERE o.resource_id = :'res'
ORDER BY o.offer_id;

INSERT INTO waitlist.outbox (resource_id, entry_id, offer_id, user_id, channel, event_type,
                             payload, created_at, state, attempts, next_attempt_at, delivered_at)
SELECT o.resource_id, o.entry_id, o.offer_id, o.user_id, 'webhook', 'offer_created',
       jsonb_build_object('resource_id', o.resource_id, 'entry_id', o.entry_id,
                          'offer_id', o.offer_id, 'user_id', o.user_id, 'expires_at', o.expires_at),
       o.created_at, 'DELIVERED', 1, o.created_at, o.created_at + interval '1 second'
FROM waitlist.offer o
WHERE o.resource_id = :'res'
ORDER BY o.offer_id;

INSERT INTO waitlist.accept_request (resource_id, offer_id, idempotency_key, state,
                                     reservation_ref, requested_at)
SELECT o.resource_id, o.offer_id, o.idempotency_key, 'ACCEPTED', o.reservation_ref, o.decided_at
FROM waitlist.offer o
WHERE o.resource_id = :'res' AND o.state = 'ACCEPTED';

INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity, state, received_at,
                                     processed_at, attempts, next_attempt_at)
SELECT o.resource_id, 'old-' || o.offer_id, 1, 'PROCESSED', o.created_at - interval '1 second',
       o.created_at, 1, o.created_at - interval '1 second'
FROM waitlist.offer o
WHERE o.resource_id = :'res' AND o.state = 'ACCEPTED';

UPDATE waitlist.resource
SET units_released = units_released + (SELECT count(*) FROM waitlist.capacity_event
                                       WHERE resource_id = :'res')
WHERE resource_id = :'res';
COMMIT;
