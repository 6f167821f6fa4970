--
-- offers: the end of an offer, without a booking function
--
-- accept (idempotent per key, a second key gets the same reservation),
-- decline (repeated decline is false), expiry by the sweep (and accept or
-- decline past the deadline before any sweep ran), leave while offered
-- (revoke), unknown and settled offers, sweep's max_offers; every state
-- change with its transition row, every outcome with its outbox row, and
-- after each step the capacity check:
--
--   units_released = free_units + OPEN + ACCEPTED + FAILED offers
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

-- every unit released is free, held by an open offer, consumed or retired
CREATE TEMP VIEW capacity AS
SELECT r.resource_id, r.units_released, r.free_units,
       count(*) FILTER (WHERE o.state = 'OPEN') AS open,
       count(*) FILTER (WHERE o.state = 'ACCEPTED') AS accepted,
       count(*) FILTER (WHERE o.state = 'FAILED') AS failed,
       r.units_released = r.free_units
           + count(*) FILTER (WHERE o.state IN ('OPEN', 'ACCEPTED', 'FAILED')) AS conserved
FROM waitlist.resource r
LEFT JOIN waitlist.offer o ON o.resource_id = r.resource_id
GROUP BY r.resource_id ORDER BY r.resource_id;

-- the offers with their fan and the fan's entry
CREATE TEMP VIEW offers AS
SELECT o.resource_id, o.offer_id, e.user_id, o.state AS offer_state,
       e.state AS entry_state, o.reservation_ref, o.idempotency_key,
       o.decided_at IS NOT NULL AS decided
FROM waitlist.offer o
JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
ORDER BY o.offer_id;

-- the audit trail, with the fan each row is about; the actor is the caller
CREATE TEMP VIEW audit AS
SELECT t.transition_id, t.entity, t.entity_id, e.user_id, t.from_state, t.to_state,
       t.reason, t.actor = current_user AS by_caller
FROM waitlist.transition t
LEFT JOIN waitlist.offer o
       ON t.entity = 'offer' AND o.resource_id = t.resource_id AND o.offer_id = t.entity_id
LEFT JOIN waitlist.entry e
       ON e.resource_id = t.resource_id
      AND e.entry_id = CASE t.entity WHEN 'entry' THEN t.entity_id ELSE o.entry_id END
ORDER BY t.transition_id;

-- the notification rows; the payload is checked against the offer
CREATE TEMP VIEW notifications AS
SELECT b.outbox_id, b.event_type, b.offer_id, e.user_id,
       (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(b.payload) k) AS payload_keys,
       b.payload->>'detail' AS detail,
       b.payload->>'reservation_ref' AS reservation_ref,
       (b.payload->>'entry_id')::bigint = b.entry_id
         AND (b.payload->>'offer_id')::bigint = b.offer_id
         AND b.payload->>'user_id' = e.user_id
         AND b.payload->>'resource_id' = b.resource_id AS payload_matches,
       (b.payload->>'expires_at')::timestamptz = o.expires_at AS expiry_matches
FROM waitlist.outbox b
JOIN waitlist.entry e ON e.resource_id = b.resource_id AND e.entry_id = b.entry_id
JOIN waitlist.offer o ON o.resource_id = b.resource_id AND o.offer_id = b.offer_id
ORDER BY b.outbox_id;

-- the last transition id seen, to show only what a step added
SELECT 0 AS seen \gset

--
-- Five fans in line, two units released: alice and bob get offers
--
SELECT waitlist_create_resource('offers-1', '10 minutes');
SELECT waitlist_join('offers-1', 'alice') AS alice,
       waitlist_join('offers-1', 'bob') AS bob,
       waitlist_join('offers-1', 'carol') AS carol,
       waitlist_join('offers-1', 'dave') AS dave,
       waitlist_join('offers-1', 'erin') AS erin \gset
SELECT waitlist_release('offers-1', 2, 'release-1');
SELECT * FROM offers;
SELECT offer_id AS alice_offer FROM waitlist.offer WHERE entry_id = :alice \gset
SELECT offer_id AS bob_offer FROM waitlist.offer WHERE entry_id = :bob \gset
-- every offer expires offer_ttl after it was made
SELECT count(*) FILTER (WHERE expires_at - created_at = interval '10 minutes') AS ttl_ok
FROM waitlist.offer;
SELECT * FROM capacity;
SELECT max(transition_id) AS seen FROM waitlist.transition \gset

--
-- Accept: OPEN -> ACCEPTED, entry ACCEPTED.  Without a booking function the
-- reservation reference is NULL and the outbox asks for the booking.
--
SELECT * FROM waitlist_accept(:alice_offer, 'alice-tap-1');
SELECT * FROM offers WHERE offer_id = :alice_offer;
SELECT * FROM audit WHERE transition_id > :seen;
SELECT * FROM notifications WHERE event_type = 'offer_accepted';
-- the same key again: the same answer, nothing new
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT count(*) AS outbox_rows FROM waitlist.outbox \gset
SELECT * FROM waitlist_accept(:alice_offer, 'alice-tap-1');
-- another key: the offer is accepted already, the same (NULL) reservation
SELECT * FROM waitlist_accept(:alice_offer, 'alice-tap-2');
SELECT count(*) AS new_transitions FROM waitlist.transition WHERE transition_id > :seen;
SELECT count(*) - :outbox_rows AS new_outbox_rows FROM waitlist.outbox;
-- one request row per key, both with the outcome
SELECT offer_id, idempotency_key, state, reservation_ref
FROM waitlist.accept_request ORDER BY idempotency_key;
SELECT * FROM capacity;

--
-- Decline: OPEN -> DECLINED, entry DECLINED, and the unit goes to the next
-- in line (carol) in the same transaction
--
SELECT waitlist_decline(:bob_offer);
SELECT * FROM offers;
SELECT * FROM audit WHERE transition_id > :seen;
SELECT * FROM notifications WHERE outbox_id > :outbox_rows;
SELECT * FROM capacity;
-- a repeated decline is false and changes nothing
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT count(*) AS outbox_rows FROM waitlist.outbox \gset
SELECT waitlist_decline(:bob_offer);
-- a declined offer cannot be accepted (WL003), under any key
SELECT * FROM waitlist_accept(:bob_offer, 'bob-tap-1');
SELECT count(*) AS new_transitions FROM waitlist.transition WHERE transition_id > :seen;
SELECT count(*) - :outbox_rows AS new_outbox_rows FROM waitlist.outbox;
SELECT count(*) AS bob_requests FROM waitlist.accept_request WHERE offer_id = :bob_offer;
-- an accepted offer can be declined no more (WL003)
SELECT waitlist_decline(:alice_offer);
SELECT * FROM offers WHERE offer_id IN (:alice_offer, :bob_offer);

--
-- Expiry.  Carol's offer is aged by hand (only state changes are audited,
-- so this writes no transition row).  Past the deadline, accept and decline
-- refuse it with WL002 although no sweep has run, and leave it OPEN.
--
SELECT offer_id AS carol_offer FROM waitlist.offer WHERE entry_id = :carol \gset
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE offer_id = :carol_offer;
SELECT count(*) AS new_transitions FROM waitlist.transition WHERE transition_id > :seen;
SELECT * FROM waitlist_accept(:carol_offer, 'carol-tap-1');
SELECT waitlist_decline(:carol_offer);
SELECT * FROM offers WHERE offer_id = :carol_offer;
SELECT count(*) AS carol_requests FROM waitlist.accept_request WHERE offer_id = :carol_offer;
-- the sweep expires it (offer and entry EXPIRED) and offers the unit to dave
SELECT waitlist_sweep();
SELECT * FROM offers;
SELECT * FROM audit WHERE transition_id > :seen;
SELECT * FROM notifications WHERE outbox_id > :outbox_rows;
SELECT * FROM capacity;
-- nothing is due any more: a second sweep expires nothing
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT count(*) AS outbox_rows FROM waitlist.outbox \gset
SELECT waitlist_sweep();
-- an expired offer stays expired: WL002 for accept and for decline
SELECT * FROM waitlist_accept(:carol_offer, 'carol-tap-2');
SELECT waitlist_decline(:carol_offer);
SELECT count(*) AS new_transitions FROM waitlist.transition WHERE transition_id > :seen;
SELECT count(*) - :outbox_rows AS new_outbox_rows FROM waitlist.outbox;

--
-- Leave while offered: the offer is REVOKED, the entry CANCELLED and the
-- unit goes to erin
--
SELECT offer_id AS dave_offer FROM waitlist.offer WHERE entry_id = :dave \gset
SELECT waitlist_leave(:dave);
SELECT * FROM offers;
SELECT * FROM audit WHERE transition_id > :seen;
SELECT * FROM notifications WHERE outbox_id > :outbox_rows;
SELECT * FROM capacity;
-- leaving again is false; a revoked offer is not open (WL003)
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT count(*) AS outbox_rows FROM waitlist.outbox \gset
SELECT waitlist_leave(:dave);
SELECT * FROM waitlist_accept(:dave_offer, 'dave-tap-1');
SELECT waitlist_decline(:dave_offer);
SELECT count(*) AS new_transitions FROM waitlist.transition WHERE transition_id > :seen;
SELECT count(*) - :outbox_rows AS new_outbox_rows FROM waitlist.outbox;

--
-- Erin declines too; nobody is left waiting, so the unit stays free
--
SELECT offer_id AS erin_offer FROM waitlist.offer WHERE entry_id = :erin \gset
SELECT waitlist_decline(:erin_offer);
SELECT * FROM offers WHERE offer_id = :erin_offer;
SELECT * FROM capacity;
-- a new fan is offered the free unit as soon as they join
SELECT waitlist_join('offers-1', 'frank') AS frank \gset
SELECT * FROM offers WHERE user_id = 'frank';
SELECT * FROM capacity;

--
-- Unknown offers: 42704 for accept and decline
--
SELECT * FROM waitlist_accept(999999, 'nobody-tap');
SELECT waitlist_decline(999999);

--
-- The sweep takes the earliest deadlines first, at most max_offers of them,
-- over all resources
--
SELECT waitlist_create_resource('offers-2', '10 minutes');
SELECT count(waitlist_join('offers-2', 'u' || i)) AS joined FROM generate_series(1, 5) i;
SELECT waitlist_release('offers-2', 3, 'release-1');
-- deadlines: frank's (offers-1) 3 minutes ago, the offers-2 offers 1, 2
-- and 4 minutes ago (u1 the latest)
UPDATE waitlist.offer o
SET expires_at = now() - CASE e.user_id WHEN 'frank' THEN interval '3 minutes'
                                        WHEN 'u1' THEN interval '1 minute'
                                        WHEN 'u2' THEN interval '2 minutes'
                                        WHEN 'u3' THEN interval '4 minutes' END
FROM waitlist.entry e
WHERE e.resource_id = o.resource_id AND e.entry_id = o.entry_id AND o.state = 'OPEN';
SELECT max(transition_id) AS seen FROM waitlist.transition \gset
SELECT waitlist_sweep(2);
SELECT entity, user_id, from_state, to_state, reason
FROM audit WHERE transition_id > :seen AND entity = 'offer' AND to_state = 'EXPIRED';
SELECT waitlist_sweep();
SELECT waitlist_sweep();
-- u4 and u5 hold the offers now; frank's unit found nobody waiting
SELECT * FROM offers WHERE offer_state = 'OPEN';
SELECT * FROM capacity;

--
-- The whole story: each entry's and offer's last transition is its state,
-- every offer was decided at most once, and every outcome has one outbox row
--
SELECT count(*) AS entries_out_of_step
FROM waitlist.entry e
WHERE e.state IS DISTINCT FROM (SELECT t.to_state FROM waitlist.transition t
                                WHERE t.resource_id = e.resource_id AND t.entity = 'entry'
                                  AND t.entity_id = e.entry_id
                                ORDER BY t.transition_id DESC LIMIT 1);
SELECT count(*) AS offers_out_of_step
FROM waitlist.offer o
WHERE o.state IS DISTINCT FROM (SELECT t.to_state FROM waitlist.transition t
                                WHERE t.resource_id = o.resource_id AND t.entity = 'offer'
                                  AND t.entity_id = o.offer_id
                                ORDER BY t.transition_id DESC LIMIT 1);
SELECT entity_id AS offer_id, count(*) AS decisions
FROM waitlist.transition
WHERE entity = 'offer' AND from_state = 'OPEN'
GROUP BY entity_id HAVING count(*) <> 1;
SELECT o.state, b.event_type, count(*)
FROM waitlist.offer o
LEFT JOIN waitlist.outbox b ON b.resource_id = o.resource_id AND b.offer_id = o.offer_id
                           AND b.event_type <> 'offer_created'
GROUP BY o.state, b.event_type ORDER BY o.state;
SELECT count(*) AS offers_without_created_row
FROM waitlist.offer o
WHERE NOT EXISTS (SELECT 1 FROM waitlist.outbox b
                  WHERE b.resource_id = o.resource_id AND b.offer_id = o.offer_id
                    AND b.event_type = 'offer_created');
SELECT count(*) FILTER (WHERE NOT payload_matches) AS payload_mismatches FROM notifications;
-- the payload keeps the deadline the offer had when the row was written:
-- only the offers aged by hand above differ, in their offer_created rows
SELECT event_type, user_id FROM notifications WHERE NOT expiry_matches;
SELECT reason, entity, from_state, to_state, count(*)
FROM waitlist.transition
GROUP BY reason, entity, from_state, to_state
ORDER BY reason, entity, from_state NULLS FIRST, to_state;
SELECT * FROM capacity;
