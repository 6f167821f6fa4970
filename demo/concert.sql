-- demo/concert.sql: a sold-out concert, from the first fan joining the
-- waitlist to the audit trail.  Run it with psql in a fresh database of a
-- server that has the waitlist extension installed and pg_cron preloaded with
-- cron.database_name set to that database (demo/run does all that):
--
--   psql -X -v ON_ERROR_STOP=1 -f demo/concert.sql

\set ON_ERROR_STOP 1
\pset footer off
\pset null '-'
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS waitlist;

\echo '== 1. Two application roles that may only call the API'
\echo '   (the tables stay private; the functions run as the extension owner)'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'box_office') THEN
        CREATE ROLE box_office;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'booking_system') THEN
        CREATE ROLE booking_system;
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION waitlist_join(text, text, integer, integer),
                          waitlist_leave(bigint),
                          waitlist_status(bigint),
                          waitlist_accept(bigint, text),
                          waitlist_decline(bigint)
    TO box_office;
GRANT EXECUTE ON FUNCTION waitlist_release(text, integer, text),
                          waitlist_promote(text, integer)
    TO booking_system;
SELECT r.rolname AS role, p.proname AS may_execute
FROM pg_roles r
CROSS JOIN pg_proc p
WHERE r.rolname IN ('box_office', 'booking_system')
  AND p.proname LIKE 'waitlist\_%'
  AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
ORDER BY 1 DESC, 2;

-- (for the demo only: runs a statement and reports how it ended)
CREATE FUNCTION pg_temp.attempt(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'done';
EXCEPTION WHEN OTHERS THEN
    RETURN format('%s (SQLSTATE %s)', SQLERRM, SQLSTATE);
END
$$;
\echo '   but they cannot touch the tables directly:'
SET ROLE box_office;
SELECT pg_temp.attempt('SELECT count(*) FROM waitlist.entry') AS "box_office reads waitlist.entry";
RESET ROLE;

\echo
\echo '== 2. The concert sells out; offers will stay open for 15 minutes and an'
\echo '   accepted offer is booked through the booking system''s function'
CREATE TABLE reservation (
    reservation_ref text PRIMARY KEY,
    concert         text NOT NULL,
    fan             text NOT NULL,
    offer_id        bigint NOT NULL UNIQUE,
    booked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION book_seat(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    INSERT INTO reservation (reservation_ref, concert, fan, offer_id)
    VALUES ('R-' || lpad(offer_id::text, 6, '0'), resource_id, user_id, offer_id)
    RETURNING reservation_ref
$$;
REVOKE ALL ON FUNCTION book_seat(text, text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION book_seat(text, text, bigint, text) TO box_office;

SELECT waitlist_create_resource('concert-2026',
                                offer_ttl => interval '15 minutes',
                                booking_function => 'book_seat(text, text, bigint, text)') \g /dev/null
SELECT resource_id, offer_ttl, max_waiting AS cap, booking_function, free_units
FROM waitlist.resource;

\echo
\echo '== 3. 5,000 fans join the waitlist (every 10th is a loyalty member, priority 1)'
SET ROLE box_office;
CREATE TEMP TABLE fan AS
SELECT n,
       format('fan-%s', lpad(n::text, 4, '0')) AS user_id,
       CASE WHEN n % 10 = 0 THEN 1 ELSE 0 END AS priority,
       waitlist_join('concert-2026',
                     format('fan-%s', lpad(n::text, 4, '0')),
                     CASE WHEN n % 10 = 0 THEN 1 ELSE 0 END) AS entry_id
FROM generate_series(1, 5000) AS n;
SELECT count(*) AS fans_joined,
       count(*) FILTER (WHERE priority = 1) AS loyalty_members
FROM fan;

\echo
\echo '   fan-0042 taps "join" twice: the second tap returns the same entry'
SELECT f.entry_id AS first_tap,
       waitlist_join('concert-2026', 'fan-0042') AS second_tap
FROM fan f WHERE f.n = 42;

\echo
\echo '== 4. Every 17th fan gives up and leaves the line'
SELECT count(*) FILTER (WHERE waitlist_leave(entry_id)) AS fans_left
FROM fan WHERE n % 17 = 0;
\echo '   leaving twice changes nothing (false the second time)'
SELECT waitlist_leave(entry_id) AS fan_0017_leaves_again FROM fan WHERE n = 17;

\echo
\echo '== 5. Cancellations arrive from the booking system, one event at a time'
\echo '   (delivered at least once: cancel-1001 comes twice and counts once)'
SET ROLE booking_system;
SELECT e.event_id, e.quantity,
       waitlist_release('concert-2026', e.quantity, e.event_id) AS recorded
FROM (VALUES (1, 'cancel-1001', 2),
             (2, 'cancel-1002', 1),
             (3, 'cancel-1003', 4),
             (4, 'cancel-1001', 2),
             (5, 'cancel-1004', 3)) AS e(ord, event_id, quantity)
ORDER BY e.ord;

\echo
\echo '   every release already promoted its units: nothing is left to offer'
SELECT waitlist_promote('concert-2026') AS further_offers;

\echo
\echo '== 6. The offers: loyalty members first, each group in the order it joined'
RESET ROLE;
SELECT o.offer_id, f.user_id, f.priority, o.state,
       o.expires_at - o.created_at AS open_for
FROM waitlist.offer o
JOIN fan f ON f.entry_id = o.entry_id
ORDER BY o.offer_id;

\echo
\echo '== 7. The fans answer their offers'
\echo '   fan-0010 accepts, and the app retries the request with the same key:'
\echo '   one booking, the same answer twice'
SET ROLE box_office;
SELECT s.offer_id AS fan_0010_offer
FROM fan f, waitlist_status(f.entry_id) s WHERE f.n = 10 \gset
SELECT 'first try' AS request, state, reservation_ref
FROM waitlist_accept(:fan_0010_offer, 'fan-0010-tap-1');
SELECT 'retry' AS request, state, reservation_ref
FROM waitlist_accept(:fan_0010_offer, 'fan-0010-tap-1');
RESET ROLE;
SELECT reservation_ref, concert, fan, offer_id FROM reservation;

\echo
\echo '   fan-0020 declines, fan-0030 leaves the waitlist while holding an offer:'
\echo '   each ticket goes straight to the next fan in line'
SET ROLE box_office;
SELECT waitlist_decline(s.offer_id) AS fan_0020_declined
FROM fan f, waitlist_status(f.entry_id) s WHERE f.n = 20;
SELECT waitlist_leave(entry_id) AS fan_0030_left FROM fan WHERE n = 30;
RESET ROLE;
SELECT o.offer_id, f.user_id, o.state, o.reservation_ref
FROM waitlist.offer o
JOIN fan f ON f.entry_id = o.entry_id
ORDER BY o.offer_id;

\echo
\echo '== 8. Audit trail of fan-0010 (accepted), fan-0020 (declined) and fan-0030 (left)'
SELECT f.user_id, t.entity, t.entity_id AS id,
       t.from_state, t.to_state, t.reason, t.actor, t.rule_version,
       to_char(t.at, 'HH24:MI:SS.MS') AS at
FROM fan f
JOIN waitlist.transition t
  ON t.resource_id = 'concert-2026'
 AND ((t.entity = 'entry' AND t.entity_id = f.entry_id)
      OR (t.entity = 'offer' AND t.entity_id IN (SELECT o.offer_id FROM waitlist.offer o
                                                 WHERE o.resource_id = 'concert-2026'
                                                   AND o.entry_id = f.entry_id)))
WHERE f.n IN (10, 20, 30)
ORDER BY f.n, t.transition_id;

\echo
\echo '   the audit trail cannot be rewritten, not even by a superuser:'
SELECT pg_temp.attempt('DELETE FROM waitlist.transition') AS "DELETE",
       pg_temp.attempt('TRUNCATE waitlist.transition') AS "TRUNCATE";

\echo
\echo '== 9. What a few fans see (waitlist_status)'
SET ROLE box_office;
SELECT f.user_id, f.priority, s.state, s.position, s.offer_id,
       to_char(s.offer_expires_at, 'HH24:MI:SS') AS offer_expires_at
FROM fan f
CROSS JOIN LATERAL waitlist_status(f.entry_id) AS s
WHERE f.n IN (1, 2, 10, 17, 20, 30, 110, 120, 130, 170, 4999, 5000)
ORDER BY s.position NULLS FIRST, f.n;
RESET ROLE;

\echo
\echo '== 10. Offers nobody answers expire: pg_cron runs the sweep every minute'
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT waitlist_schedule_sweep() AS job_id \g /dev/null
SELECT jobname, schedule, command FROM cron.job;
\echo '   (nothing is past its deadline yet, so a sweep now expires nothing)'
SELECT waitlist_sweep() AS offers_expired;

\echo
\echo '== 11. Summary'
\echo 'entries by state'
SELECT state, count(*) AS entries
FROM waitlist.entry WHERE resource_id = 'concert-2026'
GROUP BY state ORDER BY min(CASE state WHEN 'WAITING' THEN 1 WHEN 'OFFERED' THEN 2 ELSE 3 END), state;
\echo 'offers by state'
SELECT state, count(*) AS offers
FROM waitlist.offer WHERE resource_id = 'concert-2026'
GROUP BY state ORDER BY state;
\echo 'capacity'
SELECT units_released, free_units
FROM waitlist.resource WHERE resource_id = 'concert-2026';
\echo 'capacity events (the inbox)'
SELECT event_id, quantity FROM waitlist.capacity_event
WHERE resource_id = 'concert-2026' ORDER BY event_id;
\echo 'outbox rows by event type (for the notification service)'
SELECT event_type, count(*) AS rows
FROM waitlist.outbox WHERE resource_id = 'concert-2026'
GROUP BY event_type ORDER BY event_type;
\echo 'the first outbox row'
SELECT outbox_id, event_type, jsonb_pretty(payload) AS payload
FROM waitlist.outbox WHERE resource_id = 'concert-2026'
ORDER BY outbox_id LIMIT 1;
\echo 'reservations booked'
SELECT count(*) AS reservations FROM reservation;
\echo 'audit rows'
SELECT entity, to_state, count(*) AS transitions
FROM waitlist.transition WHERE resource_id = 'concert-2026'
GROUP BY entity, to_state ORDER BY entity, to_state;

\echo
\echo '== 12. The guarantees, checked (waitlist_check: one row per violated invariant)'
SELECT count(*) AS violations FROM waitlist_check('concert-2026');
