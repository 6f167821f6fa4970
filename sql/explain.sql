--
-- explain: waitlist_history() and waitlist_explain(), for support
--
-- history lists every transition of an entry and of its offers with the
-- fan's place in line just before it, rebuilt from the log; explain says
-- in sentences when the fan joined and at which place, why each offer made
-- to someone who joined later went to them first (priority, aging, an
-- unconfirmed place, the confirmation order), how the ordering rules
-- changed since, and where the fan is now.  The skip of a fan whose row a
-- leave held is in test/specs/explain_skip.spec.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

CREATE FUNCTION pg_temp.entry_of(r text, u text) RETURNS bigint
LANGUAGE sql AS $$ SELECT max(entry_id) FROM waitlist_archive.entry_all WHERE resource_id = r AND user_id = u $$;
CREATE FUNCTION pg_temp.offered(r text) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(e.user_id, ', ' ORDER BY o.offer_id)
    FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)
    WHERE o.resource_id = r
$$;
CREATE FUNCTION pg_temp.history(r text, u text)
RETURNS TABLE (entity text, from_state text, to_state text, reason text,
               rule_version text, by_me boolean, "position" bigint)
LANGUAGE sql AS $$
    SELECT h.entity, h.from_state, h.to_state, h.reason, h.rule_version,
           h.actor = current_user, h."position"
    FROM waitlist_history(pg_temp.entry_of(r, u)) h
$$;

--
-- a VIP who joined later is offered the unit first
--
SELECT waitlist_create_resource('vip', '10 minutes');
SELECT waitlist_join('vip', 'ann') > 0;
SELECT waitlist_join('vip', 'bob') > 0;
SELECT waitlist_join('vip', 'val', priority => 2) > 0;
UPDATE waitlist.entry SET joined_at = now() - CASE user_id WHEN 'ann' THEN interval '30 minutes'
                                                           WHEN 'bob' THEN interval '25 minutes'
                                                           ELSE interval '18 minutes' END
WHERE resource_id = 'vip';
SELECT waitlist_release('vip', 1, 'cancel-1');
SELECT pg_temp.offered('vip');
SELECT * FROM waitlist_explain(pg_temp.entry_of('vip', 'ann'));
SELECT * FROM waitlist_explain(pg_temp.entry_of('vip', 'bob'));
-- the VIP was overtaken by nobody
SELECT * FROM waitlist_explain(pg_temp.entry_of('vip', 'val'));

--
-- history: the place just before each transition
--
SELECT waitlist_join('vip', 'dan') > 0;
SELECT waitlist_leave(pg_temp.entry_of('vip', 'dan'));
SELECT * FROM pg_temp.history('vip', 'dan');
-- two offers in one promotion: bob was second in line when it ran
SELECT waitlist_release('vip', 2, 'cancel-2');
SELECT pg_temp.offered('vip');
SELECT (waitlist_accept(o.offer_id, 'key-1')).state
FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id) WHERE e.user_id = 'bob';
SELECT * FROM pg_temp.history('vip', 'bob');
SELECT * FROM waitlist_explain(pg_temp.entry_of('vip', 'bob'));
-- the times are those of the log
SELECT count(*) AS out_of_order
FROM (SELECT h.at < lag(h.at) OVER () AS back FROM waitlist_history(pg_temp.entry_of('vip', 'bob')) h) b
WHERE b.back;
-- archived, the history and the explanation stay (dan's entry; bob's
-- offer has notifications not yet delivered)
UPDATE waitlist.entry SET updated_at = updated_at - interval '40 days'
WHERE resource_id = 'vip' AND state IN ('ACCEPTED', 'CANCELLED');
SELECT waitlist_archive('30 days') AS archived;
SELECT count(*) AS hot, (SELECT count(*) FROM waitlist_archive.transition WHERE entity = 'entry' AND entity_id = pg_temp.entry_of('vip', 'dan')) AS archived_transitions
FROM waitlist.entry WHERE user_id = 'dan';
SELECT * FROM pg_temp.history('vip', 'dan');
SELECT * FROM waitlist_explain(pg_temp.entry_of('vip', 'dan'));

--
-- aging: a later VIP whose aged priority is higher, and the rule change
--
SELECT waitlist_create_resource('age', '10 minutes');
SELECT waitlist_join('age', 'cat') > 0;
SELECT waitlist_join('age', 'ben') > 0;
SELECT waitlist_join('age', 'vic', priority => 2) > 0;
UPDATE waitlist.entry SET joined_at = now() - CASE user_id WHEN 'cat' THEN interval '4 hours'
                                                           WHEN 'ben' THEN interval '2 hours'
                                                           ELSE interval '1 hour' END
WHERE resource_id = 'age';
-- one point per hour waited: cat 4, vic 2 + 1, ben 2
SELECT waitlist_alter_resource('age', aging_interval => '1 hour');
SELECT waitlist_release('age', 2, 'cancel-1');
SELECT pg_temp.offered('age');
SELECT * FROM waitlist_explain(pg_temp.entry_of('age', 'ben'));
SELECT * FROM pg_temp.history('age', 'ben');
-- a fan who joined after the change sees no change
SELECT waitlist_join('age', 'eli') > 0;
SELECT * FROM waitlist_explain(pg_temp.entry_of('age', 'eli'));
-- back to strict order: ben's place under the new rules
SELECT waitlist_alter_resource('age', clear_aging_interval => true);
SELECT * FROM waitlist_explain(pg_temp.entry_of('age', 'ben'));

--
-- a place not yet confirmed is passed over
--
SELECT waitlist_create_resource('tour', '10 minutes', confirm_within => '1 day');
SELECT waitlist_join('tour', 'fay') > 0;
SELECT waitlist_join('tour', 'gus') > 0;
SELECT waitlist_confirm(pg_temp.entry_of('tour', 'gus'));
SELECT waitlist_release('tour', 1, 'cancel-1');
SELECT pg_temp.offered('tour');
SELECT * FROM waitlist_explain(pg_temp.entry_of('tour', 'fay'));
SELECT waitlist_confirm(pg_temp.entry_of('tour', 'fay'));
SELECT * FROM waitlist_explain(pg_temp.entry_of('tour', 'fay'));
SELECT * FROM pg_temp.history('tour', 'fay');

--
-- places counted from the confirmation
--
SELECT waitlist_create_resource('show', '10 minutes', confirm_within => '1 day',
                                confirm_place_from => 'confirm');
SELECT waitlist_join('show', 'hal') > 0;
SELECT waitlist_join('show', 'ida') > 0;
SELECT waitlist_confirm(pg_temp.entry_of('show', 'ida'));
SELECT waitlist_confirm(pg_temp.entry_of('show', 'hal'));
SELECT waitlist_release('show', 1, 'cancel-1');
SELECT pg_temp.offered('show');
SELECT * FROM waitlist_explain(pg_temp.entry_of('show', 'hal'));

--
-- how times are read out: rounded, and a rule's interval exactly
--
SELECT d AS span, waitlist.spoken_interval(d) AS spoken, waitlist.spoken_rule_interval(d) AS rule
FROM unnest(ARRAY['29 seconds', '90 seconds', '59 minutes 40 seconds', '90 minutes', '47 hours',
                  '3 days 4 hours', '-12 minutes', '1 day', '45.5 seconds']::interval[]) d;

--
-- bad input
--
SELECT * FROM waitlist_history(NULL);
SELECT * FROM waitlist_history(-1);
SELECT * FROM waitlist_explain(NULL);
SELECT * FROM waitlist_explain(-1);
SELECT * FROM waitlist_check();
