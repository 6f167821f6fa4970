--
-- core: the whole flow through the API
--
-- resources, joining (double taps, priorities, the cap), status and
-- position, leaving (waiting and offered), releases (repeated event ids),
-- promotion, and the transition and outbox rows all of it writes.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

-- every entry with what waitlist_status() says about it
CREATE TEMP VIEW line AS
SELECT e.resource_id, e.user_id, e.priority, s.state, s."position",
       s.offer_id IS NOT NULL AS has_offer,
       s.offer_expires_at IS NOT DISTINCT FROM o.expires_at AS expiry_matches
FROM waitlist.entry e
CROSS JOIN LATERAL waitlist_status(e.entry_id) s
LEFT JOIN waitlist.offer o ON o.resource_id = e.resource_id AND o.offer_id = s.offer_id
ORDER BY e.entry_id;

-- the audit trail, with the user each entry or offer belongs to
CREATE TEMP VIEW audit AS
SELECT t.resource_id, t.entity, e.user_id, t.from_state, t.to_state, t.reason,
       CASE WHEN t.actor = session_user THEN '(session user)' ELSE t.actor::text END AS actor,
       t.rule_version
FROM waitlist.transition t
LEFT JOIN waitlist.offer o
       ON t.entity = 'offer' AND o.resource_id = t.resource_id AND o.offer_id = t.entity_id
LEFT JOIN waitlist.entry e
       ON e.resource_id = t.resource_id
      AND e.entry_id = CASE t.entity WHEN 'entry' THEN t.entity_id ELSE o.entry_id END
ORDER BY t.transition_id;

-- the notification rows, with their payload checked against the offer
CREATE TEMP VIEW notifications AS
SELECT b.resource_id, b.event_type, e.user_id,
       (SELECT pg_catalog.string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(b.payload) k) AS payload_keys,
       (b.payload->>'entry_id')::bigint = b.entry_id
         AND (b.payload->>'offer_id')::bigint = b.offer_id
         AND b.payload->>'user_id' = e.user_id
         AND b.payload->>'resource_id' = b.resource_id AS payload_matches,
       CASE WHEN b.payload ? 'expires_at'
            THEN (b.payload->>'expires_at')::timestamptz = o.expires_at END AS expiry_matches
FROM waitlist.outbox b
JOIN waitlist.entry e ON e.resource_id = b.resource_id AND e.entry_id = b.entry_id
JOIN waitlist.offer o ON o.resource_id = b.resource_id AND o.offer_id = b.offer_id
ORDER BY b.outbox_id;

CREATE TEMP VIEW resources AS
SELECT resource_id, offer_ttl, max_waiting, booking_function, free_units, units_released
FROM waitlist.resource ORDER BY resource_id;

--
-- Creating and altering a resource
--
SELECT waitlist_create_resource('core-1', '10 minutes');
SELECT * FROM resources;
-- a second create of the same id fails (42710) and changes nothing
SELECT waitlist_create_resource('core-1', '1 minute');
SELECT * FROM resources;
SELECT waitlist_alter_resource('core-1', offer_ttl => '20 minutes', max_waiting => 100);
SELECT * FROM resources;
-- NULL keeps a setting, clear_max_waiting removes the cap
SELECT waitlist_alter_resource('core-1', clear_max_waiting => true);
SELECT * FROM resources;
SELECT waitlist_alter_resource('core-1');
SELECT * FROM resources;

--
-- Joining: a double tap returns the same entry; the line is priority DESC,
-- then join order
--
SELECT waitlist_join('core-1', 'alice') AS alice \gset
SELECT waitlist_join('core-1', 'bob') AS bob \gset
SELECT waitlist_join('core-1', 'carol', 5) AS carol \gset
SELECT waitlist_join('core-1', 'dave') AS dave \gset
SELECT waitlist_join('core-1', 'erin', 5) AS erin \gset
SELECT waitlist_join('core-1', 'gina', -1) AS gina \gset
SELECT waitlist_join('core-1', 'alice') = :alice AS alice_same_entry,
       waitlist_join('core-1', 'alice', 9) = :alice AS alice_same_entry_other_priority,
       waitlist_join('core-1', 'carol', 5) = :carol AS carol_same_entry;
SELECT count(DISTINCT x) AS distinct_ids
FROM (VALUES (:alice), (:bob), (:carol), (:dave), (:erin), (:gina)) v(x);
-- the double taps wrote nothing: one entry and one transition per user
SELECT user_id, count(*) FROM waitlist.entry WHERE resource_id = 'core-1' GROUP BY 1 ORDER BY 1;
SELECT * FROM line WHERE resource_id = 'core-1';

--
-- Leaving a WAITING entry: true once, then false; the line closes up
--
SELECT waitlist_leave(:bob) AS bob_left;
SELECT waitlist_leave(:bob) AS bob_left_again;
SELECT * FROM line WHERE resource_id = 'core-1';
-- a cancelled user may join again: a new entry at the end of the line
SELECT waitlist_join('core-1', 'bob') AS bob2 \gset
SELECT :bob2 <> :bob AS bob_has_new_entry;
SELECT * FROM line WHERE resource_id = 'core-1';
-- ids that do not exist (42704)
SELECT waitlist_leave(-1);
SELECT * FROM waitlist_status(-1);

--
-- Releasing capacity: offers go to the head of the line at once; a repeated
-- event id returns false and adds nothing, whatever its quantity
--
SELECT waitlist_release('core-1', 2, 'ev-1') AS released;
SELECT waitlist_release('core-1', 2, 'ev-1') AS released_again;
SELECT waitlist_release('core-1', 7, 'ev-1') AS released_again_other_quantity;
SELECT * FROM resources WHERE resource_id = 'core-1';
SELECT event_id, quantity, state, processed_at IS NOT NULL AS processed
FROM waitlist.capacity_event WHERE resource_id = 'core-1' ORDER BY event_id;
SELECT * FROM line WHERE resource_id = 'core-1';
-- the offers: open, one per offered entry, valid for the resource's offer_ttl
SELECT e.user_id, o.state, o.expires_at - o.created_at AS ttl, o.decided_at IS NULL AS undecided
FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
WHERE o.resource_id = 'core-1' ORDER BY o.offer_id;
-- a double tap of an offered user returns the same entry and changes nothing
SELECT waitlist_join('core-1', 'carol') = :carol AS carol_same_entry;
SELECT state FROM waitlist_status(:carol);

--
-- Leaving an OFFERED entry: the offer is revoked, the entry cancelled and
-- the unit goes to the next in line (alice)
--
SELECT waitlist_leave(:carol) AS carol_left;
SELECT waitlist_leave(:carol) AS carol_left_again;
SELECT e.user_id, o.state, o.decided_at IS NOT NULL AS decided
FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
WHERE o.resource_id = 'core-1' ORDER BY o.offer_id;
SELECT * FROM line WHERE resource_id = 'core-1';
SELECT * FROM resources WHERE resource_id = 'core-1';
-- nothing is free, so promotion makes no offer
SELECT waitlist_promote('core-1') AS offers;

--
-- A release larger than the line: everyone waiting gets an offer, the rest
-- stays free, and a join is then offered a unit right away.  New offers use
-- the offer_ttl of the moment; open offers keep their deadline.
--
SELECT waitlist_alter_resource('core-1', offer_ttl => '5 minutes');
SELECT waitlist_release('core-1', 5, 'ev-2') AS released;
SELECT * FROM line WHERE resource_id = 'core-1';
SELECT * FROM resources WHERE resource_id = 'core-1';
SELECT waitlist_join('core-1', 'frank') AS frank \gset
SELECT state, "position", offer_id IS NOT NULL AS has_offer FROM waitlist_status(:frank);
SELECT * FROM resources WHERE resource_id = 'core-1';
SELECT e.user_id, o.state, o.expires_at - o.created_at AS ttl
FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
WHERE o.resource_id = 'core-1' ORDER BY o.offer_id;

-- every unit released is free or held by an open offer
SELECT r.units_released,
       r.free_units + (SELECT count(*) FROM waitlist.offer o
                       WHERE o.resource_id = r.resource_id AND o.state = 'OPEN') AS free_plus_open
FROM waitlist.resource r WHERE r.resource_id = 'core-1';

-- the audit trail of all of the above, in order
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'core-1';
SELECT DISTINCT rule_version FROM audit;
-- each entry's and offer's last transition is its current state
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
-- the outbox: one row per offer made, one per offer revoked
SELECT event_type, user_id, payload_keys, payload_matches, expiry_matches
FROM notifications WHERE resource_id = 'core-1';

--
-- A release while nobody waits keeps the unit free for the next joiner
--
SELECT waitlist_create_resource('core-free', '30 seconds');
SELECT waitlist_release('core-free', 1, 'ev-1') AS released;
SELECT * FROM resources WHERE resource_id = 'core-free';
SELECT count(*) AS offers FROM waitlist.offer WHERE resource_id = 'core-free';
SELECT waitlist_join('core-free', 'xavier') AS xavier \gset
SELECT waitlist_join('core-free', 'yvonne') AS yvonne \gset
SELECT * FROM line WHERE resource_id = 'core-free';
SELECT * FROM resources WHERE resource_id = 'core-free';
SELECT o.expires_at - o.created_at AS ttl FROM waitlist.offer o WHERE o.resource_id = 'core-free';
SELECT entity, user_id, from_state, to_state, reason, actor
FROM audit WHERE resource_id = 'core-free';

--
-- max_waiting: a full line refuses joins with WL001 and changes nothing;
-- only WAITING entries count, and a double tap is still answered
--
SELECT waitlist_create_resource('core-cap', '5 minutes', max_waiting => 2);
SELECT waitlist_join('core-cap', 'u1') AS u1 \gset
SELECT waitlist_join('core-cap', 'u2') AS u2 \gset
SELECT (SELECT count(*) FROM waitlist.entry) AS entries,
       (SELECT count(*) FROM waitlist.transition) AS transitions,
       (SELECT count(*) FROM waitlist.outbox) AS outbox \gset before_
-- expect WL001
SELECT waitlist_join('core-cap', 'u3');
SELECT (SELECT count(*) FROM waitlist.entry) = :before_entries AS entries_unchanged,
       (SELECT count(*) FROM waitlist.transition) = :before_transitions AS transitions_unchanged,
       (SELECT count(*) FROM waitlist.outbox) = :before_outbox AS outbox_unchanged;
SELECT waitlist_join('core-cap', 'u1') = :u1 AS u1_same_entry_while_full;
-- one offer makes room in the line
SELECT waitlist_release('core-cap', 1, 'ev-1') AS released;
SELECT waitlist_join('core-cap', 'u3') AS u3 \gset
-- expect WL001
SELECT waitlist_join('core-cap', 'u4');
-- a raised cap lets u4 in; leaving makes room too
SELECT waitlist_alter_resource('core-cap', max_waiting => 3);
SELECT waitlist_join('core-cap', 'u4') AS u4 \gset
-- expect WL001
SELECT waitlist_join('core-cap', 'u5');
SELECT waitlist_leave(:u2) AS u2_left;
SELECT waitlist_join('core-cap', 'u5') AS u5 \gset
SELECT * FROM line WHERE resource_id = 'core-cap';
SELECT entity, user_id, from_state, to_state, reason
FROM audit WHERE resource_id = 'core-cap';

--
-- waitlist_promote: offers at most max_offers of the free units, in line
-- order, never more units than are free.  Through the API units are never
-- free while someone waits, so free units are set by hand here.
--
SELECT waitlist_create_resource('core-promote', '1 hour');
SELECT waitlist_join('core-promote', 'p1') AS p1 \gset
SELECT waitlist_join('core-promote', 'p2') AS p2 \gset
SELECT waitlist_join('core-promote', 'p3', 1) AS p3 \gset
SELECT waitlist_join('core-promote', 'p4') AS p4 \gset
UPDATE waitlist.resource SET free_units = 3 WHERE resource_id = 'core-promote';
SELECT waitlist_promote('core-promote', 1) AS offers;
SELECT waitlist_promote('core-promote', 0) AS offers;
-- expect 22023
SELECT waitlist_promote('core-promote', -1);
SELECT * FROM line WHERE resource_id = 'core-promote';
SELECT * FROM resources WHERE resource_id = 'core-promote';
-- NULL offers every free unit, but only as many as there are
SELECT waitlist_promote('core-promote', NULL) AS offers;
SELECT waitlist_promote('core-promote') AS offers;
SELECT * FROM line WHERE resource_id = 'core-promote';
SELECT * FROM resources WHERE resource_id = 'core-promote';
-- free units with nobody waiting stay free
UPDATE waitlist.resource SET free_units = 2 WHERE resource_id = 'core-promote';
SELECT waitlist_leave(:p4) AS p4_left;
SELECT waitlist_promote('core-promote', 5) AS offers;
SELECT * FROM resources WHERE resource_id = 'core-promote';
SELECT count(*) AS open_offers FROM waitlist.offer
WHERE resource_id = 'core-promote' AND state = 'OPEN';
SELECT entity, user_id, from_state, to_state, reason
FROM audit WHERE resource_id = 'core-promote';

-- free_units never went negative anywhere
SELECT count(*) AS negative FROM waitlist.resource WHERE free_units < 0;

--
-- Unknown resources (42704)
--
SELECT waitlist_join('core-none', 'alice');
SELECT waitlist_release('core-none', 1, 'ev-1');
SELECT waitlist_promote('core-none');
SELECT waitlist_alter_resource('core-none', offer_ttl => '1 minute');
SELECT count(*) AS rows_for_unknown
FROM waitlist.capacity_event WHERE resource_id = 'core-none';
