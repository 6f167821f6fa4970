--
-- positions: what waitlist_status() shows of a fan's place
--
-- The position, its band (default bands or the resource's), the estimated
-- wait from the offers of the last hour, each as the resource's
-- position_visibility allows; past the first block of 1,000 the position
-- is read from the resource's line sample (waitlist.line_sample), which a
-- status call refreshes when it is older than a second.  Here the sample
-- is aged by hand to make the next call refresh it.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

CREATE FUNCTION pg_temp.entry_at(r text, pos bigint) RETURNS bigint
LANGUAGE sql AS $$
    SELECT entry_id FROM waitlist.entry WHERE resource_id = r AND state = 'WAITING'
    ORDER BY rank_key DESC, seq OFFSET pos - 1 LIMIT 1
$$;
CREATE FUNCTION pg_temp.age_sample(r text) RETURNS void
LANGUAGE sql AS $$
    UPDATE waitlist.line_sample SET taken_at = taken_at - interval '1 hour' WHERE resource_id = r
$$;
-- the statuses at these positions of the line
CREATE FUNCTION pg_temp.statuses(r text, positions bigint[])
RETURNS TABLE (at bigint, state text, "position" bigint, band text,
               estimated_wait interval, estimate_note text)
LANGUAGE sql AS $$
    SELECT p, s.state, s."position", s.band, s.estimated_wait, s.estimate_note
    FROM unnest(positions) p, waitlist_status(pg_temp.entry_at(r, p)) s ORDER BY p
$$;
-- waiting entries whose status disagrees with a count of the line
CREATE FUNCTION pg_temp.wrong_positions(r text, every integer) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM (
        SELECT entry_id, row_number() OVER (ORDER BY rank_key DESC, seq) rn
        FROM waitlist.entry WHERE resource_id = r AND state = 'WAITING') l,
        waitlist_status(l.entry_id) s
    WHERE (l.rn % every = 0 OR l.rn < 3) AND s."position" IS DISTINCT FROM l.rn
$$;

-- the new columns
SELECT p.proname, p.proargnames, p.proargmodes FROM pg_proc p WHERE p.oid = 'waitlist_status(bigint)'::regprocedure;

--
-- a short line: counted, live, no history
--
SELECT waitlist_create_resource('short', '10 minutes');
SELECT waitlist_join('short', 'u' || g) > 0 AS joined FROM generate_series(1, 3) g;
SELECT * FROM pg_temp.statuses('short', '{1,3}');
-- a fan who joins is seen at once, sample or not
SELECT waitlist_join('short', 'u4') > 0 AS joined;
SELECT * FROM pg_temp.statuses('short', '{4}');
-- and one who leaves moves the last fan (the back of the line is a sample point) up at once
SELECT waitlist_leave(pg_temp.entry_at('short', 1));
SELECT at, "position" FROM pg_temp.statuses('short', '{3}');
SELECT e.user_id, s."position" FROM waitlist.entry e, waitlist_status(e.entry_id) s
WHERE e.resource_id = 'short' AND e.state = 'WAITING' ORDER BY e.seq;
SELECT resource_id, rule_version, sample_position, offers_per_hour FROM waitlist.line_sample;

--
-- a deep line: 10,001 fans
--
SELECT waitlist_create_resource('deep', '10 minutes');
SELECT count(waitlist_join('deep', 'f' || g)) AS joined FROM generate_series(1, 10001) g;
-- default bands, at their boundaries; no offers in the last hour
SELECT * FROM pg_temp.statuses('deep', '{1,10,11,100,101,1000,1001,10000,10001}');
SELECT sample_position FROM waitlist.line_sample WHERE resource_id = 'deep';
-- a resource's own bands
SELECT waitlist_alter_resource('deep', position_bands => '{50,2000,10000}');
SELECT at, "position", band FROM pg_temp.statuses('deep', '{1,50,51,2000,2001,10000,10001}');
SELECT waitlist_alter_resource('deep', position_bands => '{10,100,1000,10000}');
SELECT at, "position", band FROM pg_temp.statuses('deep', '{10,11,100,101,1000,1001,10000,10001}');
SELECT waitlist_alter_resource('deep', clear_position_bands => true);

--
-- history: two offers in the last hour make the estimate
--
SELECT waitlist_release('deep', 2, 'release-1');
SELECT pg_temp.age_sample('deep');
SELECT * FROM pg_temp.statuses('deep', '{1,1500,9999}');
SELECT state, "position", band, estimated_wait, estimate_note
FROM waitlist_status((SELECT min(entry_id) FROM waitlist.entry WHERE resource_id = 'deep'));

--
-- visibility: band shows the band only, and an estimate from its bound;
-- none shows neither
--
SELECT waitlist_alter_resource('deep', position_visibility => 'band');
SELECT * FROM pg_temp.statuses('deep', '{5,10,11,9999}');
-- the open last band: from its lower bound
SELECT waitlist_alter_resource('deep', position_bands => '{50,2000}');
SELECT * FROM pg_temp.statuses('deep', '{2001,9999}');
SELECT waitlist_alter_resource('deep', clear_position_bands => true);
SELECT waitlist_alter_resource('deep', position_visibility => 'none');
SELECT * FROM pg_temp.statuses('deep', '{5,9999}');
SELECT waitlist_alter_resource('deep', position_visibility => 'exact');

--
-- promotions and leaves move positions; a refreshed sample shows it
--
SELECT waitlist_release('deep', 3, 'release-2');
SELECT waitlist_leave(pg_temp.entry_at('deep', g)) FROM generate_series(3000, 2996, -1) g;
SELECT pg_temp.age_sample('deep');
SELECT at, "position" FROM pg_temp.statuses('deep', '{1,1000,1001,2995,2996,5000,9991}');
SELECT pg_temp.wrong_positions('deep', 97) AS wrong;
SELECT array_length(sample_position, 1) AS points, sample_position[2] AS second_point,
       offers_per_hour
FROM waitlist.line_sample WHERE resource_id = 'deep';
-- a VIP goes to the front: counted from the head, at once
SELECT waitlist_join('deep', 'vip', priority => 5) > 0 AS joined;
SELECT state, "position" FROM waitlist_status((SELECT entry_id FROM waitlist.entry WHERE user_id = 'vip'));
SELECT pg_temp.age_sample('deep');
SELECT pg_temp.wrong_positions('deep', 97) AS wrong;

--
-- a rule change ranks the line again: a sample of the old rules is not used
--
SELECT waitlist_alter_resource('deep', aging_interval => '1 hour');
SELECT pg_temp.wrong_positions('deep', 97) AS wrong;
SELECT rule_version = (SELECT rule_version FROM waitlist.resource WHERE resource_id = 'deep') AS current_rules
FROM waitlist.line_sample WHERE resource_id = 'deep';

--
-- status writes only where it may: not under REPEATABLE READ, not in a
-- read-only transaction (which still get a position)
--
SELECT pg_temp.age_sample('deep');
SELECT taken_at AS aged FROM waitlist.line_sample WHERE resource_id = 'deep' \gset
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT at, "position" FROM pg_temp.statuses('deep', '{5000}');
COMMIT;
BEGIN READ ONLY;
SELECT at, "position" FROM pg_temp.statuses('deep', '{5000}');
COMMIT;
SELECT taken_at = :'aged' AS unchanged FROM waitlist.line_sample WHERE resource_id = 'deep';
SELECT at, "position" FROM pg_temp.statuses('deep', '{5000}');
SELECT taken_at > :'aged' AS refreshed FROM waitlist.line_sample WHERE resource_id = 'deep';

-- not waiting: no position, a note that says why
SELECT state, "position", band, estimated_wait, estimate_note
FROM waitlist_status((SELECT min(entry_id) FROM waitlist.entry WHERE resource_id = 'deep' AND state = 'OFFERED'));

SELECT count(*) AS violations FROM waitlist_check();
