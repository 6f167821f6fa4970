--
-- waves: a resource that offers at most wave_size units per wave_interval
--
-- Offers go out in line order across waves; units that come back or are
-- released while a wave is spent stay free until the next wave, which the
-- sweep continues here (no promotion worker runs in this server).
-- waitlist_check() never reports a resource waiting for its next wave as
-- idle.  Clearing the waves hands the waiting units out; bad settings are
-- refused.
--
-- Waves are aged by hand (wave_started_at moved back by the interval), as
-- offers.sql ages offers; one resource with a short interval runs on the
-- real clock.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;

-- the offers in the order they were made, with their fan's place in line
CREATE TEMP VIEW offers AS
SELECT o.resource_id, o.offer_id, e.user_id, e.priority, o.state
FROM waitlist.offer o
JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
ORDER BY o.offer_id;

-- the resource's wave settings and progress, without times
CREATE TEMP VIEW wave AS
SELECT resource_id, free_units, wave_size, wave_interval, wave_offers,
       wave_started_at IS NOT NULL AS wave_started,
       (SELECT count(*) FROM waitlist.entry e
         WHERE e.resource_id = r.resource_id AND e.state = 'WAITING') AS waiting
FROM waitlist.resource r ORDER BY resource_id;

-- every offer went to the first waiter in line when it was made: replaying
-- the audit trail, no entry ahead of the offered one (priority DESC, seq)
-- had joined and was still waiting
CREATE TEMP VIEW line_order AS
SELECT count(*) AS passed_over
FROM waitlist.transition t
JOIN waitlist.offer o ON o.resource_id = t.resource_id AND o.offer_id = t.entity_id
JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
JOIN waitlist.entry a ON a.resource_id = e.resource_id
 AND (a.priority > e.priority OR (a.priority = e.priority AND a.seq < e.seq))
WHERE t.entity = 'offer' AND t.from_state IS NULL
  -- a joined before the offer was made ...
  AND EXISTS (SELECT 1 FROM waitlist.transition j
              WHERE j.resource_id = a.resource_id AND j.entity = 'entry' AND j.entity_id = a.entry_id
                AND j.from_state IS NULL AND j.transition_id < t.transition_id)
  -- ... and had not left WAITING by then
  AND NOT EXISTS (SELECT 1 FROM waitlist.transition l
                  WHERE l.resource_id = a.resource_id AND l.entity = 'entry' AND l.entity_id = a.entry_id
                    AND l.from_state = 'WAITING' AND l.transition_id <= t.transition_id);

--
-- Two offers per hour; six fans wait, five units come back
--
SELECT waitlist_create_resource('drop', '10 minutes', wave_size => 2, wave_interval => '1 hour');
SELECT * FROM wave;
SELECT count(waitlist_join('drop', 'f' || i)) AS joined FROM generate_series(1, 6) i;
-- wave 1: f1 and f2; three units stay free
SELECT waitlist_release('drop', 5, 'drop-1');
SELECT * FROM offers;
SELECT * FROM wave;
SELECT * FROM waitlist_check();

--
-- The wave is spent: nothing gives out more offers before the hour is up,
-- neither the sweep, nor promote, nor a join, nor a release, nor a decline
-- that gives a unit back
--
SELECT waitlist_sweep();
SELECT waitlist_promote('drop');
-- vip goes to the front of the line (priority 1)
SELECT waitlist_join('drop', 'vip', 1) > 0 AS joined;
SELECT waitlist_release('drop', 1, 'drop-2');
SELECT waitlist_decline(offer_id) FROM offers WHERE user_id = 'f1';
SELECT * FROM offers;
SELECT * FROM wave;
SELECT * FROM waitlist_check();

--
-- Wave 2, an hour later: the sweep offers the next two in line, vip and f3
--
UPDATE waitlist.resource SET wave_started_at = wave_started_at - interval '1 hour'
WHERE resource_id = 'drop';
SELECT waitlist_sweep();
SELECT * FROM offers;
SELECT * FROM wave;
SELECT * FROM waitlist_check();
-- spent again
SELECT waitlist_sweep();
SELECT count(*) AS offers FROM offers;

--
-- Wave 3: f4 and f5
--
UPDATE waitlist.resource SET wave_started_at = wave_started_at - interval '1 hour'
WHERE resource_id = 'drop';
SELECT waitlist_sweep();
SELECT * FROM offers WHERE offer_id > 4;
SELECT * FROM wave;
SELECT * FROM waitlist_check();

--
-- Wave 4 has one unit for one fan (f6); a unit released during the wave
-- goes out at once to the next fan, since the wave may still make one more
-- offer, and after that the wave is spent
--
UPDATE waitlist.resource SET wave_started_at = wave_started_at - interval '1 hour'
WHERE resource_id = 'drop';
SELECT waitlist_sweep();
SELECT * FROM wave;
SELECT waitlist_join('drop', 'f7') > 0 AS joined;
SELECT waitlist_release('drop', 1, 'drop-3');
SELECT * FROM offers WHERE offer_id > 6;
SELECT * FROM wave;
SELECT count(waitlist_join('drop', 'h' || i)) AS joined FROM generate_series(1, 4) i;
SELECT waitlist_release('drop', 3, 'drop-4');
SELECT * FROM wave;
SELECT * FROM waitlist_check();
SELECT * FROM line_order;

--
-- Clearing the waves: nothing holds the free units back any more, so the
-- waiting fans get them and no unit sits idle
--
SELECT waitlist_alter_resource('drop', clear_waves => true);
SELECT resource_id, wave_size, wave_interval FROM waitlist.resource WHERE resource_id = 'drop';
SELECT * FROM waitlist_check();
SELECT waitlist_sweep();
SELECT * FROM offers WHERE offer_id > 8;
SELECT resource_id, free_units, wave_size, wave_interval, waiting FROM wave WHERE resource_id = 'drop';
-- without waves a release is offered at once
SELECT waitlist_release('drop', 1, 'drop-5');
SELECT * FROM offers WHERE offer_id > 11;
SELECT resource_id, free_units, wave_size, wave_interval, waiting FROM wave WHERE resource_id = 'drop';
SELECT * FROM line_order;

--
-- On the real clock: two offers per 200 milliseconds, continued by the
-- sweep, one wave per sweep
--
SELECT waitlist_create_resource('flash', '10 minutes', wave_size => 2,
                                wave_interval => '200 milliseconds');
SELECT count(waitlist_join('flash', 'g' || i)) AS joined FROM generate_series(1, 5) i;
SELECT waitlist_release('flash', 5, 'flash-1');
SELECT user_id, state FROM offers WHERE resource_id = 'flash';
SELECT pg_sleep(0.25);
SELECT waitlist_sweep();
SELECT user_id, state FROM offers WHERE resource_id = 'flash';
SELECT pg_sleep(0.25);
SELECT waitlist_sweep();
SELECT user_id, state FROM offers WHERE resource_id = 'flash';
SELECT * FROM wave WHERE resource_id = 'flash';
SELECT * FROM waitlist_check();

--
-- Setting waves on a resource without them, and changing one setting of a
-- resource that has them
--
SELECT waitlist_create_resource('plain', '10 minutes');
SELECT waitlist_alter_resource('plain', wave_size => 5, wave_interval => '1 minute');
SELECT waitlist_alter_resource('flash', wave_size => 3);
SELECT waitlist_alter_resource('flash', wave_interval => '1 minute');
SELECT resource_id, wave_size, wave_interval FROM waitlist.resource ORDER BY resource_id;

--
-- Bad settings: 22023, and nothing changes
--
-- size and interval go together when created
SELECT waitlist_create_resource('bad-waves', wave_size => 2);
SELECT waitlist_create_resource('bad-waves', wave_interval => '1 minute');
-- both positive
SELECT waitlist_create_resource('bad-waves', wave_size => 0, wave_interval => '1 minute');
SELECT waitlist_create_resource('bad-waves', wave_size => -1, wave_interval => '1 minute');
SELECT waitlist_create_resource('bad-waves', wave_size => 2, wave_interval => '0');
SELECT waitlist_create_resource('bad-waves', wave_size => 2, wave_interval => '-1 minute');
SELECT waitlist_create_resource('bad-waves', wave_size => 2, wave_interval => '1 day -24 hours');
SELECT waitlist_alter_resource('flash', wave_size => 0);
SELECT waitlist_alter_resource('flash', wave_size => -3);
SELECT waitlist_alter_resource('flash', wave_interval => '0');
SELECT waitlist_alter_resource('flash', wave_interval => '-5 seconds');
-- setting and clearing at once
SELECT waitlist_alter_resource('flash', wave_size => 3, clear_waves => true);
SELECT waitlist_alter_resource('flash', wave_interval => '1 minute', clear_waves => true);
-- a resource without waves cannot get half of them
SELECT waitlist_alter_resource('drop', wave_size => 2);
SELECT waitlist_alter_resource('drop', wave_interval => '1 minute');
-- NULL for clear_waves: 22004; an unknown resource: 42704
SELECT waitlist_alter_resource('flash', clear_waves => NULL);
SELECT waitlist_alter_resource('no-such-resource', wave_size => 2, wave_interval => '1 minute');
-- bounded: wave_size at most 1000000, wave_interval at most 1 year
SELECT waitlist_create_resource('bad-waves', wave_size => 1000001, wave_interval => '1 minute');
SELECT waitlist_create_resource('bad-waves', wave_size => 2, wave_interval => '100000000 years');
SELECT waitlist_create_resource('bad-waves', wave_size => 2, wave_interval => '1 year 1 microsecond');
SELECT waitlist_alter_resource('flash', wave_size => 2147483647);
SELECT waitlist_alter_resource('flash', wave_interval => '100000000 years');
SELECT waitlist_alter_resource('flash', wave_size => 3, wave_interval => '13 months');
SELECT resource_id, wave_size, wave_interval FROM waitlist.resource ORDER BY resource_id;
-- the bounds themselves are fine
SELECT waitlist_create_resource('long-waves', wave_size => 1000000, wave_interval => '1 year');
SELECT waitlist_alter_resource('long-waves', wave_size => 1, wave_interval => '12 months');
SELECT resource_id, wave_size, wave_interval FROM waitlist.resource WHERE resource_id = 'long-waves';

--
-- Rows written by hand.  The table holds the bounds too (23514), and a wave
-- whose end would not be a timestamp cannot be written (22008)
--
UPDATE waitlist.resource SET wave_interval = '100000000 years' WHERE resource_id = 'flash';
UPDATE waitlist.resource SET wave_size = 2000000000 WHERE resource_id = 'flash';
UPDATE waitlist.resource SET offer_ttl = '300000 years' WHERE resource_id = 'flash';
UPDATE waitlist.resource SET max_waiting = 9000000000000000000 WHERE resource_id = 'flash';
UPDATE waitlist.resource SET wave_started_at = '294276-06-01', wave_interval = '1 year'
WHERE resource_id = 'flash';
-- a wave that started later than now (by hand) is taken as started now: the
-- sweep and waitlist_check() agree that it is still on
UPDATE waitlist.resource SET wave_started_at = now() + interval '1 day', wave_offers = wave_size,
       wave_interval = '1 hour'
WHERE resource_id = 'flash';
SELECT count(waitlist_join('flash', 'late' || i)) AS joined FROM generate_series(1, 2) i;
SELECT waitlist_release('flash', 1, 'flash-late');
SELECT waitlist_sweep();
SELECT * FROM wave WHERE resource_id = 'flash';
SELECT * FROM waitlist_check();

--
-- A 1.0 database on this library, with rows 1.0 let through: a wave of a
-- hundred million years (1.0 accepted any positive interval), an sms rate
-- of 1e308 (1.0 accepted any finite one).  Under 1.0's library every sweep
-- and every outbox claim failed for all resources; now both go on for the
-- others.  waitlist_check() is 1.0's until ALTER EXTENSION UPDATE, which
-- clamps the values to the bounds.
--
SET client_min_messages = warning;
DROP EXTENSION waitlist CASCADE;
CREATE EXTENSION waitlist VERSION '1.0';
RESET client_min_messages;
SELECT waitlist_create_resource('huge', '10 minutes', wave_size => 1, wave_interval => '1 minute');
SELECT count(waitlist_join('huge', 'h' || i)) AS joined FROM generate_series(1, 3) i;
SELECT waitlist_release('huge', 2, 'huge-1');
UPDATE waitlist.resource SET wave_interval = '100000000 years' WHERE resource_id = 'huge';
UPDATE waitlist.channel SET rate_per_second = 1e308, burst = 2147483647, tokens = 0,
       refilled_at = clock_timestamp() - interval '1 hour'
WHERE channel = 'sms';
SELECT waitlist_create_resource('sane', '10 minutes', channels => '{sms,webhook}');
SELECT count(waitlist_join('sane', 's' || i)) AS joined FROM generate_series(1, 2) i;
SELECT waitlist_release('sane', 1, 'sane-1');
-- s1's offer is past its deadline: the sweep expires it and offers to s2
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE resource_id = 'sane';
SELECT waitlist_sweep();
SELECT resource_id, user_id, state FROM waitlist.offer ORDER BY offer_id;
SELECT channel, count(*) FROM waitlist_outbox_claim('relay') GROUP BY channel ORDER BY channel;
SELECT * FROM waitlist_check();
SET client_min_messages = warning;
ALTER EXTENSION waitlist UPDATE;
RESET client_min_messages;
SELECT resource_id, wave_size, wave_interval FROM waitlist.resource ORDER BY resource_id;
SELECT channel, rate_per_second, burst, tokens BETWEEN 0 AND burst AS tokens_in_bucket
FROM waitlist.channel ORDER BY channel;
SELECT * FROM waitlist_check();
