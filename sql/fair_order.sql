--
-- fair_order: priority lanes with aging, rule versions, confirmed places
--
-- With aging_interval a waiting fan earns one priority point per interval
-- waited, so a late VIP goes ahead of those who joined shortly before, not
-- of everyone.  The line is ranked once per entry (rank_key), so the order
-- holds at every instant.  Changing the ordering rules bumps the resource's
-- rule version, is audited as a transition of the resource, ranks the line
-- again, and every transition records the version it was decided under.
-- With confirm_within a join holds a PENDING place, which takes part in
-- promotion once confirmed and lapses (EXPIRED, not_confirmed) if not.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

CREATE FUNCTION pg_temp.entry_of(r text, u text) RETURNS bigint
LANGUAGE sql AS $$ SELECT max(entry_id) FROM waitlist.entry WHERE resource_id = r AND user_id = u $$;
CREATE FUNCTION pg_temp.offered(r text) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(e.user_id, ', ' ORDER BY o.offer_id)
    FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
    WHERE o.resource_id = r
$$;

-- settings are checked when they are set
SELECT waitlist_create_resource('bad', aging_interval => '0');
SELECT waitlist_create_resource('bad', aging_interval => '2 years');
SELECT waitlist_create_resource('bad', confirm_within => '-1 minute');
SELECT waitlist_create_resource('bad', confirm_place_from => 'tomorrow');
SELECT waitlist_create_resource('bad', confirm_place_from => NULL);
SELECT count(*) AS bad_resources FROM waitlist.resource WHERE resource_id = 'bad';

--
-- strict priority, then aging
--
SELECT waitlist_create_resource('gig', '10 minutes');
SELECT rule_version FROM waitlist.resource WHERE resource_id = 'gig';
SELECT waitlist_join('gig', 'ann') > 0, waitlist_join('gig', 'bob') > 0,
       waitlist_join('gig', 'vip', priority => 2) > 0;
-- ann joined five hours ago, bob one hour ago, the VIP just now
UPDATE waitlist.entry SET joined_at = now() - interval '5 hours' WHERE user_id = 'ann';
UPDATE waitlist.entry SET joined_at = now() - interval '1 hour' WHERE user_id = 'bob';
SELECT e.user_id, s."position" FROM waitlist.entry e, waitlist_status(e.entry_id) s
WHERE e.resource_id = 'gig' ORDER BY s."position";

-- one point per hour waited: ann (0 + 5) before the VIP (2 + 0) before bob (0 + 1)
SELECT waitlist_alter_resource('gig', aging_interval => '1 hour');
SELECT rule_version, aging_interval FROM waitlist.resource WHERE resource_id = 'gig';
SELECT entity, entity_id, from_state, to_state, reason, rule_version
FROM waitlist.transition WHERE entity = 'resource' ORDER BY transition_id;
SELECT e.user_id, s."position" FROM waitlist.entry e, waitlist_status(e.entry_id) s
WHERE e.resource_id = 'gig' ORDER BY s."position";
-- the same rules again change nothing
SELECT waitlist_alter_resource('gig', aging_interval => '1 hour');
SELECT count(*) AS rule_changes FROM waitlist.transition WHERE entity = 'resource';
-- a later VIP with the same priority ranks behind the earlier one
SELECT waitlist_join('gig', 'vip2', priority => 2) > 0;
SELECT waitlist_release('gig', 4, 'cancel-1');
SELECT pg_temp.offered('gig');
-- the offers were decided under the new rules, and say so
SELECT DISTINCT rule_version FROM waitlist.transition
WHERE resource_id = 'gig' AND entity = 'offer';
-- strict order again: a new version, the line ranked by priority alone
SELECT waitlist_alter_resource('gig', clear_aging_interval => true);
SELECT rule_version FROM waitlist.resource WHERE resource_id = 'gig';
SELECT * FROM waitlist_check();

--
-- confirmed places
--
SELECT waitlist_create_resource('tour', '10 minutes', confirm_within => '1 day');
SELECT waitlist_join('tour', u) > 0 FROM unnest(ARRAY['cat', 'dan', 'eve', 'fay']) u;
SELECT user_id, state, confirm_by > now() AS has_deadline FROM waitlist.entry
WHERE resource_id = 'tour' ORDER BY entry_id;
SELECT event_type, user_id, payload->>'entry_id' = entry_id::text AS names_entry, payload ? 'expires_at' AS has_deadline
FROM waitlist.outbox WHERE resource_id = 'tour' ORDER BY outbox_id;
-- a double tap finds the PENDING place
SELECT waitlist_join('tour', 'cat') = pg_temp.entry_of('tour', 'cat') AS same_entry;
SELECT state, "position" FROM waitlist_status(pg_temp.entry_of('tour', 'cat'));
-- nobody unconfirmed is offered anything
SELECT waitlist_release('tour', 1, 'cancel-1');
SELECT pg_temp.offered('tour') AS offered, free_units FROM waitlist.resource WHERE resource_id = 'tour';
-- dan confirms first and is offered the unit that was waiting
SELECT waitlist_confirm(pg_temp.entry_of('tour', 'dan'));
SELECT waitlist_confirm(pg_temp.entry_of('tour', 'dan'));
SELECT pg_temp.offered('tour') AS offered;
-- cat confirms: the place counts from the join, ahead of eve who confirms later
SELECT waitlist_confirm(pg_temp.entry_of('tour', 'eve'));
SELECT waitlist_confirm(pg_temp.entry_of('tour', 'cat'));
SELECT e.user_id, s."position" FROM waitlist.entry e, waitlist_status(e.entry_id) s
WHERE e.resource_id = 'tour' AND e.state = 'WAITING' ORDER BY s."position";
-- fay never confirms: the sweep lets the place go
UPDATE waitlist.entry SET confirm_by = now() - interval '1 second' WHERE user_id = 'fay';
SELECT waitlist_sweep(100);
SELECT state FROM waitlist.entry WHERE user_id = 'fay';
SELECT waitlist_confirm(pg_temp.entry_of('tour', 'fay'));
SELECT waitlist_confirm(NULL);
SELECT waitlist_confirm(-1);
-- an unconfirmed place can be left
SELECT waitlist_join('tour', 'gus') > 0;
SELECT waitlist_leave(pg_temp.entry_of('tour', 'gus'));
SELECT state FROM waitlist.entry WHERE user_id = 'gus';
SELECT entity, from_state, to_state, reason FROM waitlist.transition
WHERE resource_id = 'tour' AND entity = 'entry'
  AND entity_id IN (pg_temp.entry_of('tour', 'fay'), pg_temp.entry_of('tour', 'gus'), pg_temp.entry_of('tour', 'eve'))
ORDER BY entity_id, transition_id;

-- places counted from the confirmation: who confirms first goes first
SELECT waitlist_create_resource('show', '10 minutes', confirm_within => '1 day',
                                confirm_place_from => 'confirm');
SELECT waitlist_join('show', u) > 0 FROM unnest(ARRAY['hal', 'ida']) u;
SELECT waitlist_confirm(pg_temp.entry_of('show', 'ida'));
SELECT waitlist_confirm(pg_temp.entry_of('show', 'hal'));
SELECT e.user_id, s."position" FROM waitlist.entry e, waitlist_status(e.entry_id) s
WHERE e.resource_id = 'show' ORDER BY s."position";
-- changing it is a rule change
SELECT waitlist_alter_resource('show', confirm_place_from => 'join');
SELECT rule_version FROM waitlist.resource WHERE resource_id = 'show';
SELECT reason FROM waitlist.transition WHERE resource_id = 'show' AND entity = 'resource';
SELECT * FROM waitlist_check();

--
-- join rate limits: their bounds; without the library preloaded (as here)
-- there are no buckets to keep them, so setting one is refused
--
SELECT waitlist_create_resource('bad', join_burst => 5);
SELECT waitlist_create_resource('bad', join_rate_per_second => 0);
SELECT waitlist_create_resource('bad', join_rate_per_second => 'NaN');
SELECT waitlist_create_resource('bad', join_rate_per_second => 10, join_burst => 0);
SELECT waitlist_create_resource('bad', join_rate_per_second => 10);
SELECT waitlist_alter_resource('tour', join_rate_per_second => 10, clear_join_rate => true);
SELECT count(*) AS bad_resources FROM waitlist.resource WHERE resource_id = 'bad';
