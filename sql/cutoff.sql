--
-- cutoff: the offer cutoff and shrinking offer TTLs
--
-- No offer is made after a resource's offers_close_at and none lasts past
-- it; an offer with less than min_offer_ttl left is not made, and its unit
-- goes back to the booking system (capacity_returned); with ttl_shrink an
-- offer lasts a quarter of the time left.  At the cutoff the line closes
-- once: those in it are told (waitlist_closed) and their entries end
-- EXPIRED, reason closed; later joins are refused (WL019).
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

-- bad input
SELECT waitlist_create_resource('bad', offers_close_at => now() - interval '1 minute');
SELECT waitlist_create_resource('bad', min_offer_ttl => '0');
SELECT waitlist_create_resource('bad', ttl_shrink => NULL);
SELECT count(*) AS bad_resources FROM waitlist.resource WHERE resource_id = 'bad';

-- deadlines clipped to the cutoff
SELECT waitlist_create_resource('gig', '2 hours', offers_close_at => now() + interval '1 hour');
SELECT waitlist_join('gig', u) > 0 FROM unnest(ARRAY['ann', 'bob', 'cat', 'dan']) u;
SELECT waitlist_release('gig', 1, 'cancel-1');
SELECT user_id, expires_at = (SELECT offers_close_at FROM waitlist.resource WHERE resource_id = 'gig') AS clipped
FROM waitlist.offer;

-- shrinking: a quarter of the time left, but at least min_offer_ttl
SELECT waitlist_alter_resource('gig', ttl_shrink => true, min_offer_ttl => '5 minutes');
SELECT waitlist_release('gig', 1, 'cancel-2');
SELECT user_id, round(extract(epoch FROM expires_at - now()) / 60) AS minutes
FROM waitlist.offer ORDER BY offer_id;

-- too little time left: the unit goes back to the booking system
SELECT waitlist_alter_resource('gig', offers_close_at => now() + interval '2 minutes');
SELECT waitlist_release('gig', 2, 'cancel-3');
SELECT count(*) AS offers FROM waitlist.offer;
SELECT free_units, units_returned FROM waitlist.resource WHERE resource_id = 'gig';
SELECT event_type, channel, payload->>'quantity' AS quantity, payload->>'detail' AS detail
FROM waitlist.outbox WHERE event_type = 'capacity_returned';
SELECT * FROM waitlist_check();

-- the cutoff: the line closes once
UPDATE waitlist.resource SET offers_close_at = now() - interval '1 second' WHERE resource_id = 'gig';
SELECT waitlist_sweep(100) AS expired;
SELECT user_id, e.state, t.reason
FROM waitlist.entry e
JOIN LATERAL (SELECT reason FROM waitlist.transition t
              WHERE t.resource_id = e.resource_id AND t.entity = 'entry' AND t.entity_id = e.entry_id
              ORDER BY transition_id DESC LIMIT 1) t ON true
ORDER BY e.entry_id;
SELECT event_type, user_id FROM waitlist.outbox WHERE event_type = 'waitlist_closed' ORDER BY outbox_id;
SELECT closed_at IS NOT NULL AS closed FROM waitlist.resource WHERE resource_id = 'gig';
SELECT waitlist_sweep(100) AS expired;
SELECT count(*) AS closed_rows_once FROM waitlist.outbox WHERE event_type = 'waitlist_closed';
-- later joins are refused; a fan who holds an offer is told their entry
SELECT waitlist_join('gig', 'eve');
SELECT waitlist_join('gig', 'ann') = (SELECT entry_id FROM waitlist.entry WHERE user_id = 'ann') AS same_entry;
-- the open offers end at their clipped deadline; their units go back too
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE state = 'OPEN';
SELECT waitlist_sweep(100) AS expired;
SELECT free_units, units_returned FROM waitlist.resource WHERE resource_id = 'gig';
SELECT waitlist_alter_resource('gig', offers_close_at => now() + interval '1 day');
SELECT * FROM waitlist_check();
