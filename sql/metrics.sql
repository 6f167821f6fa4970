--
-- metrics: resource_stats, outbox_stats, lag_stats and waitlist_metrics()
--
-- A small scenario with every outcome, then the views' values and the
-- Prometheus text exposition's shape (HELP and TYPE once per metric, label
-- values escaped, counters named *_total).
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
RESET client_min_messages;
SET waitlist.promotion_mode = inline;

CREATE FUNCTION pg_temp.no_seat(resource_id text, user_id text, offer_id bigint, key text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'seat gone' USING ERRCODE = 'WL004';
END;
$$;

SELECT waitlist_create_resource('m-1', '10 minutes', channels => '{webhook,sms}');
-- a resource id that needs escaping in a label
SELECT waitlist_create_resource(E'm-"2"\\x', '10 minutes', booking_function => 'pg_temp.no_seat(text, text, bigint, text)');
SELECT waitlist_create_resource('m-empty');

SELECT count(waitlist_join('m-1', 'u' || g)) AS joined FROM generate_series(1, 6) g;
SELECT waitlist_join(E'm-"2"\\x', 'u1'), waitlist_join(E'm-"2"\\x', 'u2');
SELECT waitlist_release('m-1', 4, 'ev-1');
SELECT waitlist_release(E'm-"2"\\x', 1, 'ev-2');

-- m-1: accept one, decline one, one expires unseen, one expires seen
SELECT state FROM waitlist_accept((SELECT min(offer_id) FROM waitlist.offer WHERE resource_id = 'm-1'), 'k1');
SELECT waitlist_decline((SELECT offer_id FROM waitlist.offer WHERE resource_id = 'm-1' AND state = 'OPEN' ORDER BY offer_id LIMIT 1));
SELECT waitlist_offer_seen((SELECT offer_id FROM waitlist.offer WHERE resource_id = 'm-1' AND state = 'OPEN' ORDER BY offer_id LIMIT 1));
UPDATE waitlist.offer SET expires_at = now() - interval '1 second'
WHERE resource_id = 'm-1' AND state = 'OPEN'
  AND offer_id IN (SELECT offer_id FROM waitlist.offer WHERE resource_id = 'm-1' AND state = 'OPEN' ORDER BY offer_id LIMIT 2);
SELECT waitlist_sweep() AS expired;
-- m-"2"\x: the booking function fails the offer
SELECT state FROM waitlist_accept((SELECT min(offer_id) FROM waitlist.offer WHERE resource_id = E'm-"2"\\x'), 'k2');

-- a relay delivers one row, dead-letters one, leases one
SET waitlist.outbox_max_attempts = 1;
SELECT count(*) AS claimed FROM (
    SELECT * FROM waitlist_outbox_claim('relay-1', 3, '1 hour', '{sms}')) c;
SELECT waitlist_outbox_ack(outbox_id, lease_token)
FROM waitlist.outbox WHERE channel = 'sms' AND lease_token IS NOT NULL ORDER BY outbox_id LIMIT 1;
SELECT waitlist_outbox_fail(outbox_id, lease_token, 'receiver said 410')
FROM waitlist.outbox WHERE channel = 'sms' AND state = 'PENDING' AND lease_token IS NOT NULL ORDER BY outbox_id LIMIT 1;
RESET waitlist.outbox_max_attempts;

-- the views against the tables they summarize
SELECT resource_id, waiting, pending_events, pending_units, open_offers, free_units,
       accepted, declined, expired, expired_unseen, booking_failures, dead_events,
       outbox_backlog, outbox_oldest_seconds >= 0 AS has_oldest
FROM waitlist.resource_stats ORDER BY resource_id;
SELECT s.resource_id,
       s.waiting = (SELECT count(*) FROM waitlist.entry e WHERE e.resource_id = s.resource_id AND e.state = 'WAITING') AS waiting_ok,
       s.open_offers = (SELECT count(*) FROM waitlist.offer o WHERE o.resource_id = s.resource_id AND o.state = 'OPEN') AS open_ok,
       s.outbox_backlog = (SELECT count(*) FROM waitlist.outbox x WHERE x.resource_id = s.resource_id AND x.state = 'PENDING') AS backlog_ok
FROM waitlist.resource_stats s ORDER BY 1;
SELECT resource_id, channel, backlog, leased, oldest_seconds >= 0 AS has_oldest, dead
FROM waitlist.outbox_stats ORDER BY resource_id, channel;
SELECT lag, channel, samples, sum_seconds >= 0 AS sum_ok,
       p50_seconds <= p95_seconds AND p95_seconds <= p99_seconds AS quantiles_ordered
FROM waitlist.lag_stats ORDER BY lag, channel NULLS FIRST;

-- worker-mode events still pending show up as pending (no worker serves
-- this database, so the event stays as a worker-mode release leaves it)
INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity) VALUES ('m-empty', 'ev-3', 2);
INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity, state, attempts, last_error)
VALUES ('m-empty', 'ev-4', 1, 'DEAD', 5, 'boom');
SELECT pending_events, pending_units, dead_events FROM waitlist.resource_stats WHERE resource_id = 'm-empty';
DELETE FROM waitlist.capacity_event WHERE resource_id = 'm-empty';

-- the exposition: one HELP and one TYPE per metric, before its samples
SELECT waitlist_metrics() AS m \gset
CREATE TEMP TABLE exposition AS
SELECT n, line FROM regexp_split_to_table(:'m', E'\n') WITH ORDINALITY AS l(line, n);
SELECT count(*) FILTER (WHERE line LIKE '# HELP %') AS help_lines,
       count(*) FILTER (WHERE line LIKE '# TYPE %') AS type_lines,
       count(*) FILTER (WHERE line = '') AS empty_lines,
       right(:'m', 1) = E'\n' AS ends_with_newline
FROM exposition;
-- every sample line has a TYPE line for its metric, earlier
SELECT count(*) AS samples_without_type
FROM exposition s
WHERE s.line NOT LIKE '#%' AND s.line <> ''
  AND NOT EXISTS (SELECT 1 FROM exposition t
                  WHERE t.n < s.n AND t.line LIKE '# TYPE %'
                    AND split_part(t.line, ' ', 3) = substring(s.line FROM '^[a-z_]+'));
-- counters and only counters end in _total
SELECT split_part(line, ' ', 3) AS metric, split_part(line, ' ', 4) AS type
FROM exposition WHERE line LIKE '# TYPE %' ORDER BY n;
-- every sample: name{labels} value, the value a number or NaN
SELECT count(*) AS malformed
FROM exposition
WHERE line NOT LIKE '#%' AND line <> ''
  AND line !~ '^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? (-?[0-9.e+-]+|NaN)$';
SELECT line FROM exposition
WHERE line LIKE 'waitlist_entries_waiting%' OR line LIKE 'waitlist_offers_%_total%'
   OR line LIKE 'waitlist_booking_failures_total%' OR line LIKE 'waitlist_outbox_dead%'
   OR line LIKE 'waitlist_resources %'
ORDER BY n;
-- without preloaded workers there are no worker metrics
SELECT count(*) AS worker_lines FROM exposition WHERE line LIKE '%waitlist_worker_%';

--
-- Counters survive archiving: waitlist_archive() moves the terminal entries
-- with their offers out of the hot tables, and every *_total sample, and
-- the counter columns of resource_stats, stay where they were.
--
-- the fans of m-"2"\x leave, so that its FAILED offer ends with an entry;
-- the relay delivers what is left (the leased row with its lease, then the
-- rest), so that every ended entry may be archived
SELECT count(waitlist_leave(entry_id)) AS left_line
FROM waitlist.entry WHERE resource_id = E'm-"2"\\x';
SELECT count(waitlist_outbox_ack(outbox_id, lease_token)) AS acked_leased
FROM waitlist.outbox WHERE state = 'PENDING' AND lease_token IS NOT NULL;
DO $$
BEGIN
    WHILE (SELECT count(waitlist_outbox_ack(c.outbox_id, c.lease_token))
           FROM waitlist_outbox_claim('relay-1', 100, '1 hour') c) > 0 LOOP
    END LOOP;
END
$$;
SELECT count(*) AS undelivered FROM waitlist.outbox WHERE state = 'PENDING';
-- a month and more passes
UPDATE waitlist.entry SET updated_at = updated_at - interval '40 days';
UPDATE waitlist.capacity_event SET processed_at = processed_at - interval '40 days';
SELECT waitlist_metrics() AS m_before \gset
CREATE TEMP TABLE stats_before AS
SELECT resource_id, accepted, declined, expired, expired_unseen, booking_failures
FROM waitlist.resource_stats;
SELECT waitlist_archive('30 days') > 0 AS archived;
SELECT o.resource_id, o.state, count(*) AS archived_offers
FROM waitlist_archive.offer o GROUP BY 1, 2 ORDER BY 1, 2;
SELECT waitlist_metrics() AS m_after \gset
CREATE TEMP VIEW counter_samples AS
SELECT 'before' AS at, l AS line
FROM regexp_split_to_table(:'m_before', E'\n') l WHERE l ~ '^[a-z_]+_total[{ ]'
UNION ALL
SELECT 'after', l
FROM regexp_split_to_table(:'m_after', E'\n') l WHERE l ~ '^[a-z_]+_total[{ ]';
-- no sample changed, none vanished or appeared
SELECT count(*) FILTER (WHERE at = 'before') AS counters,
       count(*) FILTER (WHERE at = 'after') AS counters_after
FROM counter_samples;
(SELECT line FROM counter_samples WHERE at = 'before'
 EXCEPT SELECT line FROM counter_samples WHERE at = 'after')
UNION ALL
(SELECT line FROM counter_samples WHERE at = 'after'
 EXCEPT SELECT line FROM counter_samples WHERE at = 'before');
SELECT line FROM counter_samples WHERE at = 'after' AND line !~ ' 0$' ORDER BY line;
(SELECT * FROM stats_before
 EXCEPT SELECT resource_id, accepted, declined, expired, expired_unseen, booking_failures
        FROM waitlist.resource_stats)
UNION ALL
(SELECT resource_id, accepted, declined, expired, expired_unseen, booking_failures
 FROM waitlist.resource_stats
 EXCEPT SELECT * FROM stats_before);
SELECT count(*) AS invariants_violated FROM waitlist_check();
