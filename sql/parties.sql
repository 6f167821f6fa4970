--
-- parties: party sizes and parallel offers
--
-- A fan joins for a party of quantity (at most the resource's
-- max_party_size); an offer holds all of its party's units, and accept,
-- decline, expiry and leave move them together.  'strict' keeps the head
-- of the line waiting until its party fits; 'skip_to_fit' offers the first
-- party that fits, and the audit and waitlist_explain() say who was passed
-- over.  With offer_fanout K a unit is offered to K fans at once: the first
-- accept takes it, the others are revoked (filled) and their fans go back
-- to their places; the booking function runs for the winner only.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

CREATE VIEW line AS
SELECT e.resource_id, e.user_id, e.quantity, e.state,
       (SELECT o.units FROM waitlist.offer o
        WHERE o.resource_id = e.resource_id AND o.entry_id = e.entry_id AND o.state = 'OPEN') AS offered_units
FROM waitlist.entry e ORDER BY e.entry_id;
CREATE VIEW free AS SELECT resource_id, free_units FROM waitlist.resource ORDER BY resource_id;

-- bad input
SELECT waitlist_create_resource('bad', max_party_size => 0);
SELECT waitlist_create_resource('bad', max_party_size => 1001);
SELECT waitlist_create_resource('bad', max_party_size => NULL);
SELECT waitlist_create_resource('bad', party_policy => 'largest_first');
SELECT waitlist_create_resource('bad', offer_fanout => 0);
SELECT waitlist_create_resource('bad', offer_fanout => 51);
SELECT waitlist_create_resource('bad', offer_fanout => 3, max_party_size => 2);
SELECT count(*) AS bad_resources FROM waitlist.resource WHERE resource_id = 'bad';

SELECT waitlist_create_resource('table-for-four', '1 hour', max_party_size => 4);
SELECT waitlist_join('table-for-four', 'nobody', 0, 0);
SELECT waitlist_join('table-for-four', 'nobody', 0, -3);
SELECT waitlist_join('table-for-four', 'nobody', 0, NULL);
SELECT waitlist_join('table-for-four', 'crowd', 0, 5);
SELECT waitlist_alter_resource('table-for-four', offer_fanout => 2);
SELECT count(*) AS entries FROM waitlist.entry;

-- strict: the head of the line waits until its party fits
SELECT waitlist_join('table-for-four', 'ann', 0, 3) AS ann \gset
SELECT waitlist_join('table-for-four', 'bob', 0, 1) > 0 AS joined;
SELECT waitlist_join('table-for-four', 'ann', 0, 3) = :ann AS double_tap;
SELECT waitlist_release('table-for-four', 2, 'cancel-1');
SELECT * FROM line;
SELECT * FROM free;
SELECT waitlist_release('table-for-four', 1, 'cancel-2');
SELECT * FROM line;
SELECT payload->>'quantity' AS quantity FROM waitlist.outbox
WHERE event_type = 'offer_created' AND user_id = 'ann';
SELECT * FROM waitlist_check('table-for-four');

-- a decline gives back all of the party's units, to the next that fits
SELECT waitlist_join('table-for-four', 'cat', 0, 2) > 0 AS joined;
SELECT waitlist_decline(offer_id) FROM waitlist.offer WHERE user_id = 'ann' AND state = 'OPEN';
SELECT * FROM line;
SELECT * FROM free;

-- an accept consumes them all, a leave while offered gives them back
SELECT state FROM waitlist_accept((SELECT offer_id FROM waitlist.offer WHERE user_id = 'bob' AND state = 'OPEN'), 'k-bob');
SELECT waitlist_leave(entry_id) FROM waitlist.entry WHERE user_id = 'cat' AND state = 'OFFERED';
SELECT * FROM free;
-- and an expiry too
SELECT waitlist_join('table-for-four', 'dan', 0, 2) > 0 AS joined;
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE user_id = 'dan' AND state = 'OPEN';
SELECT waitlist_sweep() >= 0 AS swept;
SELECT * FROM line;
SELECT * FROM waitlist_check('table-for-four');

-- skip_to_fit: the first party that fits, and the audit says who was passed over
SELECT waitlist_create_resource('bar', '1 hour', max_party_size => 6, party_policy => 'skip_to_fit');
SELECT waitlist_join('bar', u, 0, q) > 0 AS joined
FROM (VALUES ('big', 5), ('pair', 2), ('trio', 3), ('solo', 1)) v(u, q);
SELECT waitlist_release('bar', 3, 'cancel-1');
SELECT * FROM line WHERE resource_id = 'bar';
SELECT t.entity_id, e.user_id, t.reason FROM waitlist.transition t
JOIN waitlist.entry e ON e.resource_id = t.resource_id AND e.entry_id = t.entity_id
WHERE t.resource_id = 'bar' AND t.entity = 'entry' AND t.to_state = 'OFFERED' ORDER BY t.transition_id;
SELECT line FROM waitlist_explain((SELECT entry_id FROM waitlist.entry WHERE user_id = 'big')) line
WHERE line LIKE 'An offer%';
SELECT * FROM waitlist_check('bar');
-- policy changes are rule changes
SELECT waitlist_alter_resource('bar', party_policy => 'strict');
SELECT rule_version FROM waitlist.resource WHERE resource_id = 'bar';
SELECT waitlist_alter_resource('bar', party_policy => 'strict');
SELECT rule_version FROM waitlist.resource WHERE resource_id = 'bar';

-- parallel offers: one unit, three fans, the first accept takes it
CREATE TABLE bookings (user_id text, offer_id bigint);
CREATE FUNCTION book(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text LANGUAGE sql AS $$
    INSERT INTO bookings VALUES (user_id, offer_id) RETURNING 'seat-' || offer_id
$$;
GRANT INSERT ON bookings TO PUBLIC;
SELECT waitlist_create_resource('gig', '1 hour', booking_function => 'book(text, text, bigint, text)',
                                offer_fanout => 3);
SELECT waitlist_join('gig', 'fan-' || g) > 0 AS joined FROM generate_series(1, 5) g;
SELECT waitlist_release('gig', 1, 'cancel-1');
SELECT user_id, state, unit_id IS NOT NULL AS shared FROM waitlist.offer WHERE resource_id = 'gig' ORDER BY offer_id;
SELECT * FROM free WHERE resource_id = 'gig';
SELECT state FROM waitlist_accept((SELECT offer_id FROM waitlist.offer WHERE user_id = 'fan-2'), 'k-2');
SELECT state FROM waitlist_accept((SELECT offer_id FROM waitlist.offer WHERE user_id = 'fan-1'), 'k-1');
SELECT user_id FROM bookings;
SELECT o.user_id, o.state AS offer, e.state AS entry,
       (SELECT t.reason FROM waitlist.transition t WHERE t.entity = 'offer' AND t.entity_id = o.offer_id
        ORDER BY t.transition_id DESC LIMIT 1) AS reason
FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
WHERE o.resource_id = 'gig' ORDER BY o.offer_id;
SELECT payload->>'detail' AS detail FROM waitlist.outbox
WHERE resource_id = 'gig' AND event_type = 'offer_revoked' ORDER BY outbox_id;
-- the fans passed back are first in line for the next unit
SELECT waitlist_release('gig', 1, 'cancel-2');
SELECT user_id, state FROM waitlist.offer WHERE resource_id = 'gig' AND state = 'OPEN' ORDER BY offer_id;
-- a decline leaves the unit with the others; the last one gives it back
SELECT waitlist_decline(offer_id) FROM waitlist.offer WHERE resource_id = 'gig' AND user_id = 'fan-1' AND state = 'OPEN';
SELECT * FROM free WHERE resource_id = 'gig';
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE resource_id = 'gig' AND state = 'OPEN';
SELECT waitlist_sweep() >= 0 AS swept;
SELECT user_id, state FROM waitlist.offer WHERE resource_id = 'gig' AND state = 'OPEN' ORDER BY offer_id;
SELECT * FROM waitlist_check('gig');
