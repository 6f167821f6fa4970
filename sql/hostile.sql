--
-- hostile: what a caller can set or own before it calls the API must not
-- change what the extension's own SQL computes
--
-- The frame pins search_path and, beside it, the settings that change the
-- meaning of SQL or how values print: TimeZone (timestamp arithmetic with
-- days and months), DateStyle, IntervalStyle, extra_float_digits,
-- bytea_output (the capacity trigger's event ids), and the parse settings.
-- A booking function still runs with the caller's own values.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
DROP SCHEMA IF EXISTS hostile CASCADE;
RESET client_min_messages;
CREATE SCHEMA hostile;

/*
 * A time zone whose clocks spring forward an hour at the given moment (a
 * POSIX rule: standard time at UTC, summer time an hour ahead, starting on
 * that day of the year at that time; it ends half a year later).
 */
CREATE FUNCTION hostile.dst_at(t timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT format('AAA0BBB,%s/%s,%s/0',
                  extract(doy FROM t AT TIME ZONE 'UTC')::int - 1,
                  to_char(t AT TIME ZONE 'UTC', 'HH24:MI:SS'),
                  (extract(doy FROM t AT TIME ZONE 'UTC')::int - 1 + 180) % 365)
$$;

-- an offer of a one-day ttl lasts 24 hours, whatever the caller's time zone
SELECT waitlist_create_resource('dst', '1 day');
SELECT waitlist_join('dst', 'fan-1') IS NOT NULL AS joined;
BEGIN;
SELECT set_config('TimeZone', hostile.dst_at(now() + interval '12 hours'), true) IS NOT NULL AS set;
-- the zone springs forward within the next day
SELECT extract(epoch FROM (now() + interval '1 day') - now()) / 3600 AS hours_in_a_local_day;
SELECT waitlist_release('dst', 1, 'e1');
SELECT extract(epoch FROM o.expires_at - now()) / 3600 AS offer_hours
FROM waitlist.offer o WHERE o.resource_id = 'dst';
COMMIT;

-- waitlist_check() reads waves the same way: a wave of a day that began
-- 23.5 hours ago is still running, so this resource is throttled, not idle
SELECT waitlist_create_resource('wave', '10 minutes', wave_size => 1, wave_interval => '1 day');
SELECT waitlist_join('wave', 'fan-' || i) IS NOT NULL AS joined FROM generate_series(1, 2) i;
SELECT waitlist_release('wave', 2, 'e1');
UPDATE waitlist.resource SET wave_started_at = now() - interval '23 hours 30 minutes'
WHERE resource_id = 'wave';
SELECT free_units, wave_offers FROM waitlist.resource WHERE resource_id = 'wave';
BEGIN;
SELECT set_config('TimeZone', hostile.dst_at(now() - interval '12 hours'), true) IS NOT NULL AS set;
SELECT invariant FROM waitlist_check('wave');
COMMIT;

-- the capacity trigger's event id does not depend on how the session prints
-- dates and timestamps: cancelling a row again releases nothing
CREATE TABLE hostile.seats (
    show_day date,
    show_at timestamptz,
    seat integer,
    concert text,
    status text NOT NULL DEFAULT 'active',
    PRIMARY KEY (show_day, show_at, seat)
);
CREATE TRIGGER seats_waitlist
    AFTER UPDATE OR DELETE ON hostile.seats
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', '1', 'status', 'cancelled');
SELECT waitlist_create_resource('concert', '10 minutes');
INSERT INTO hostile.seats VALUES ('2026-03-04', '2026-03-04 20:00+00', 7, 'concert');
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'UTC';
UPDATE hostile.seats SET status = 'cancelled';
UPDATE hostile.seats SET status = 'active';
SET DateStyle = 'German';
SET TimeZone = 'Asia/Tokyo';
UPDATE hostile.seats SET status = 'cancelled';
RESET DateStyle;
RESET TimeZone;
SELECT event_id, quantity FROM waitlist.capacity_event WHERE resource_id = 'concert';
SELECT units_released FROM waitlist.resource WHERE resource_id = 'concert';

-- partitions with keys of their own (the partitioned table has none): rows
-- of two partitions with the same key are two releases
CREATE TABLE hostile.zoned (
    zone text, id integer, concert text, status text NOT NULL DEFAULT 'active'
) PARTITION BY LIST (zone);
CREATE TABLE hostile.zoned_a PARTITION OF hostile.zoned (PRIMARY KEY (id)) FOR VALUES IN ('a');
CREATE TABLE hostile.zoned_b PARTITION OF hostile.zoned (PRIMARY KEY (id)) FOR VALUES IN ('b');
CREATE TRIGGER zoned_waitlist
    AFTER UPDATE OR DELETE ON hostile.zoned
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', '1', 'status', 'cancelled');
SELECT waitlist_create_resource('zoned', '10 minutes');
INSERT INTO hostile.zoned VALUES ('a', 1, 'zoned'), ('b', 1, 'zoned');
UPDATE hostile.zoned SET status = 'cancelled';
SELECT event_id, quantity FROM waitlist.capacity_event WHERE resource_id = 'zoned' ORDER BY event_id;
SELECT units_released FROM waitlist.resource WHERE resource_id = 'zoned';

-- a booking function runs with the caller's settings, not the frame's
CREATE FUNCTION hostile.book(p_resource text, p_fan text, p_offer bigint, p_key text)
RETURNS text LANGUAGE sql AS $$
    SELECT current_setting('TimeZone') || ' / ' || current_setting('DateStyle')
           || ' / ' || current_setting('search_path')
$$;
SELECT waitlist_create_resource('booked', '10 minutes',
                                booking_function => 'hostile.book(text, text, bigint, text)');
SELECT waitlist_join('booked', 'fan-1') IS NOT NULL AS joined;
SELECT waitlist_release('booked', 1, 'e1');
SELECT offer_id AS booked_offer FROM waitlist.offer WHERE resource_id = 'booked' \gset
SET TimeZone = 'Europe/Paris';
SET DateStyle = 'German';
SET search_path = hostile, public;
SELECT * FROM waitlist_accept(:booked_offer, 'k1');
RESET search_path;
RESET DateStyle;
RESET TimeZone;

SELECT invariant, resource_id, detail FROM waitlist_check() WHERE resource_id <> 'wave';

DROP SCHEMA hostile CASCADE;
