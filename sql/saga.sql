--
-- saga: the accept saga of an external booking service, and offer extensions
--
-- On a resource with booking => 'external' an accept moves the offer OPEN ->
-- ACCEPTING (the unit held, the entry OFFERED) and asks the booking service
-- through one booking_requested outbox row; the service reports back:
--   confirmed          ACCEPTING -> ACCEPTED, the unit consumed
--   failed, retryable  another request (attempt + 1) while attempts and the
--                      deadline allow, else EXPIRED and the unit to the next fan
--   failed, not        FAILED, the unit retired, the fan back in their place
-- and a confirmation that comes after the saga ended (WL015) or books an
-- accepted offer a second time (WL016) is refused, and recorded all the same
-- for the booking system to undo.  The sweep ends sagas at their deadline.
-- waitlist_extend_offer() moves an open offer's deadline, once per key,
-- within the resource's max_offer_extension.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

CREATE FUNCTION pg_temp.offer_of(u text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT max(offer_id) FROM waitlist.offer WHERE user_id = u
$$;
CREATE FUNCTION pg_temp.booking_rows() RETURNS TABLE (event_type text, user_id text, attempt text, has_key boolean, has_deadline boolean)
LANGUAGE sql AS $$
    SELECT event_type, user_id, payload->>'attempt', payload ? 'idempotency_key', payload ? 'deadline'
    FROM waitlist.outbox WHERE channel = 'booking' ORDER BY outbox_id
$$;

-- settings are checked when they are set
SELECT waitlist_create_resource('bad', booking => 'carrier-pigeon');
SELECT waitlist_create_resource('bad', booking => 'function');
SELECT waitlist_create_resource('bad', booking => 'external',
                                booking_function => 'pg_catalog.concat_ws(text, "any")'::regprocedure);
SELECT waitlist_create_resource('bad', booking => 'external', booking_timeout => '0');
SELECT waitlist_create_resource('bad', booking => 'external', booking_timeout => '2 years');
SELECT waitlist_create_resource('bad', booking => 'external', booking_timeout => NULL);
SELECT waitlist_create_resource('bad', booking => 'external', booking_max_attempts => 0);
SELECT waitlist_create_resource('bad', booking => 'external', booking_max_attempts => 101);
SELECT waitlist_create_resource('bad', max_offer_extension => '-1 minute');
SELECT count(*) AS bad_resources FROM waitlist.resource WHERE resource_id = 'bad';

SELECT waitlist_create_resource('gig', booking => 'external', booking_max_attempts => 3);
SELECT booking, booking_timeout, booking_max_attempts, max_offer_extension
FROM waitlist.resource WHERE resource_id = 'gig';
SELECT waitlist_join('gig', u) > 0 AS joined FROM unnest(ARRAY['ann', 'bob', 'cat', 'dan']) u;

-- an accept starts the saga: ACCEPTING, one booking request, unit held
SELECT waitlist_release('gig', 1, 'cancel-1');
SELECT * FROM waitlist_accept(pg_temp.offer_of('ann'), 'tap-1');
SELECT * FROM waitlist_accept(pg_temp.offer_of('ann'), 'tap-1');
SELECT * FROM waitlist_accept(pg_temp.offer_of('ann'), 'tap-2');
SELECT * FROM pg_temp.booking_rows();
SELECT payload->>'idempotency_key' AS key FROM waitlist.outbox WHERE event_type = 'booking_requested';
-- a relay claims them on channel booking (a resource cannot notify fans there)
SELECT channel, event_type, payload->>'offer_id' = pg_temp.offer_of('ann')::text AS for_ann
FROM waitlist_outbox_claim('booking-relay', 10, '30 seconds', '{booking}');
SELECT waitlist_create_resource('bad', channels => '{booking}');
SELECT state FROM waitlist_status((SELECT entry_id FROM waitlist.entry WHERE user_id = 'ann'));
SELECT offer_id = pg_temp.offer_of('ann') AS shows_offer
FROM waitlist_status((SELECT entry_id FROM waitlist.entry WHERE user_id = 'ann'));
SELECT free_units FROM waitlist.resource WHERE resource_id = 'gig';
-- the fan cannot leave or decline while the booking service books
SELECT waitlist_leave((SELECT entry_id FROM waitlist.entry WHERE user_id = 'ann'));
SELECT waitlist_decline(pg_temp.offer_of('ann'));
SELECT waitlist_extend_offer(pg_temp.offer_of('ann'), '1 minute', 'payment', 'x-1');
-- the booking channel is not the fan's inbox
SELECT count(*) AS booking_rows_in_inbox FROM waitlist_inbox('ann') WHERE kind = 'booking_requested';

-- 503: another request after a backoff, attempt 2
SELECT waitlist_booking_failed(pg_temp.offer_of('ann'), 'HTTP 503', true);
SELECT * FROM pg_temp.booking_rows();
SELECT next_attempt_at > now() AS waits_out_backoff
FROM waitlist.outbox WHERE event_type = 'booking_requested' ORDER BY outbox_id DESC LIMIT 1;

-- 201: ACCEPTED, the unit consumed; the same reservation again changes nothing
SELECT waitlist_booking_confirmed(pg_temp.offer_of('ann'), 'R-ann');
SELECT waitlist_booking_confirmed(pg_temp.offer_of('ann'), 'R-ann');
SELECT state, reservation_ref FROM waitlist.offer WHERE offer_id = pg_temp.offer_of('ann');
SELECT state FROM waitlist.entry WHERE user_id = 'ann';
SELECT * FROM waitlist_accept(pg_temp.offer_of('ann'), 'tap-1');
SELECT * FROM waitlist_accept(pg_temp.offer_of('ann'), 'tap-3');
SELECT event_type, channel FROM waitlist.outbox
WHERE offer_id = pg_temp.offer_of('ann') ORDER BY outbox_id;
-- a second reservation for an accepted offer: WL016, recorded all the same
SELECT waitlist_booking_confirmed(pg_temp.offer_of('ann'), 'R-ann-again');
SELECT event_type, payload->>'reservation_ref' AS ref, payload->>'accepted_reservation_ref' AS accepted
FROM waitlist.outbox WHERE event_type = 'booking_duplicate_confirmation';
SELECT waitlist_booking_failed(pg_temp.offer_of('ann'), 'late 409', false);

-- 409: FAILED, the unit retired, the fan back in their place (ahead of cat)
SELECT waitlist_release('gig', 1, 'cancel-2');
SELECT state FROM waitlist_accept(pg_temp.offer_of('bob'), 'b-1');
SELECT waitlist_booking_failed(pg_temp.offer_of('bob'), 'HTTP 409: seat gone', false);
SELECT payload->>'detail' AS detail FROM waitlist.outbox
WHERE offer_id = pg_temp.offer_of('bob') AND event_type = 'offer_failed' LIMIT 1;
SELECT e.user_id, s.state, s."position"
FROM waitlist.entry e, waitlist_status(e.entry_id) s
WHERE e.resource_id = 'gig' AND e.state = 'WAITING' ORDER BY "position";
SELECT free_units FROM waitlist.resource WHERE resource_id = 'gig';

-- attempts run out: EXPIRED, the unit goes to the next fan; a late
-- confirmation is refused (WL015) and recorded for the booking system
SELECT waitlist_release('gig', 1, 'cancel-3');
SELECT state FROM waitlist_accept(pg_temp.offer_of('bob'), 'b-2');
SELECT waitlist_booking_failed(pg_temp.offer_of('bob'), 'HTTP 503', true);
SELECT waitlist_booking_failed(pg_temp.offer_of('bob'), 'timeout', true);
SELECT waitlist_booking_failed(pg_temp.offer_of('bob'), 'timeout', true);
SELECT waitlist_booking_failed(pg_temp.offer_of('bob'), 'timeout', true);
SELECT state FROM waitlist.entry WHERE user_id = 'bob' ORDER BY entry_id DESC LIMIT 1;
SELECT state FROM waitlist.offer WHERE offer_id = pg_temp.offer_of('cat');
SELECT waitlist_booking_confirmed(pg_temp.offer_of('bob'), 'R-bob');
SELECT payload->>'state' AS state, payload->>'reservation_ref' AS ref
FROM waitlist.outbox WHERE event_type = 'booking_late_confirmation';
SELECT state FROM waitlist.offer WHERE offer_id = pg_temp.offer_of('bob');

-- the deadline: the sweep ends the saga, the unit goes to the next fan
SELECT state FROM waitlist_accept(pg_temp.offer_of('cat'), 'c-1');
UPDATE waitlist.offer SET booking_deadline = now() - interval '1 second'
WHERE offer_id = pg_temp.offer_of('cat');
SELECT waitlist_sweep(100);
SELECT state FROM waitlist.offer WHERE offer_id = pg_temp.offer_of('cat');
SELECT state FROM waitlist.offer WHERE offer_id = pg_temp.offer_of('dan');
SELECT state FROM waitlist_accept(pg_temp.offer_of('cat'), 'c-1');
SELECT waitlist_booking_failed(pg_temp.offer_of('cat'), 'HTTP 503', true);

-- reports for offers with no saga
SELECT waitlist_booking_confirmed(pg_temp.offer_of('dan'), 'R-dan');
SELECT waitlist_booking_failed(pg_temp.offer_of('dan'), 'x', true);
SELECT waitlist_booking_confirmed(NULL, 'R');
SELECT waitlist_booking_confirmed(pg_temp.offer_of('dan'), '');
SELECT waitlist_booking_failed(pg_temp.offer_of('dan'), 'x', NULL);
SELECT waitlist_booking_confirmed(-1, 'R');

-- every saga transition is audited
SELECT entity, from_state, to_state, reason FROM waitlist.transition
WHERE resource_id = 'gig'
  AND ((entity = 'offer' AND entity_id = pg_temp.offer_of('ann'))
    OR (entity = 'entry' AND entity_id = (SELECT entry_id FROM waitlist.entry WHERE user_id = 'ann')))
ORDER BY transition_id;
SELECT * FROM waitlist_check();

-- switching a resource's booking
CREATE FUNCTION pg_temp.book(resource_id text, user_id text, offer_id bigint, key text)
RETURNS text LANGUAGE sql AS $$ SELECT 'in-db-' || offer_id $$;
SELECT waitlist_alter_resource('gig', booking_function => 'pg_temp.book(text, text, bigint, text)'::regprocedure);
SELECT booking FROM waitlist.resource WHERE resource_id = 'gig';
SELECT waitlist_alter_resource('gig', booking => 'external');
SELECT waitlist_alter_resource('gig', booking => 'external', clear_booking_function => true);
SELECT booking, booking_function FROM waitlist.resource WHERE resource_id = 'gig';
SELECT waitlist_alter_resource('gig', booking => 'none', booking_timeout => '30 seconds',
                               booking_max_attempts => 2);
SELECT booking, booking_timeout, booking_max_attempts FROM waitlist.resource WHERE resource_id = 'gig';
SELECT waitlist_alter_resource('gig', max_offer_extension => '1 minute', clear_max_offer_extension => true);

-- extensions: once per key, within max_offer_extension (one offer_ttl by default)
SELECT waitlist_create_resource('show', offer_ttl => '10 minutes');
SELECT waitlist_join('show', 'eve') > 0 AS joined;
SELECT waitlist_release('show', 1, 'cancel-1');
CREATE TEMP TABLE deadline AS
SELECT expires_at AS before, waitlist_offer_token(offer_id) AS old_token
FROM waitlist.offer WHERE user_id = 'eve';
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '5 minutes', 'payment authorisation', 'k-1')
       - before AS moved_by FROM deadline;
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '5 minutes', 'payment authorisation', 'k-1')
       - before AS same_key_same_answer FROM deadline;
SELECT expires_at - before AS offer_moved_by, extended_by FROM waitlist.offer, deadline
WHERE user_id = 'eve';
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '5 minutes', 'slow bank', 'k-2') - before AS moved_by
FROM deadline;
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '1 second', 'more', 'k-3');
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '-1 minute', 'back', 'k-4');
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), NULL, 'none', 'k-5');
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '1 minute', '', 'k-6');
SELECT idempotency_key, by_interval, reason FROM waitlist.offer_extension ORDER BY created_at, idempotency_key;
SELECT event_type, payload->>'detail' AS detail, payload ? 'token' AS has_token
FROM waitlist.outbox WHERE user_id = 'eve' ORDER BY outbox_id;
-- the link moves with the deadline: the old token names the old one
SELECT * FROM waitlist_accept_token((SELECT old_token FROM deadline), 't-1');
SELECT * FROM waitlist_accept_token((SELECT payload->>'token' FROM waitlist.outbox
                                     WHERE event_type = 'offer_extended' ORDER BY outbox_id DESC LIMIT 1), 't-1');
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '1 minute', 'too late', 'k-7');
SELECT waitlist_extend_offer(pg_temp.offer_of('eve'), '5 minutes', 'payment authorisation', 'k-1')
       - before AS answered_after_settled FROM deadline;
SELECT from_state, to_state, reason FROM waitlist.transition
WHERE entity = 'offer' AND entity_id = pg_temp.offer_of('eve') ORDER BY transition_id;
-- no extensions at all
SELECT waitlist_alter_resource('show', max_offer_extension => '0');
SELECT waitlist_join('show', 'fay') > 0 AS joined;
SELECT waitlist_release('show', 1, 'cancel-2');
SELECT waitlist_extend_offer(pg_temp.offer_of('fay'), '1 minute', 'please', 'k-1');
SELECT * FROM waitlist_check();
