--
-- capacity_trigger: waitlist_capacity_trigger() on a booking system's
-- reservations table
--
-- A cancelling UPDATE, or the DELETE of a reservation not yet cancelled,
-- releases its seats to the waitlist in the same transaction, with the
-- event id '<schema>.<table>:<primary key values>', so that cancelling the
-- same row again releases nothing.  Rows of resources without a waitlist are
-- ignored.  Bad column names (42703), a table without a primary key (55000),
-- a wrong number of arguments (22023), an out-of-range quantity (22023) and
-- a trigger fired the wrong way (39P01) are errors that undo the statement.
--
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
DROP SCHEMA IF EXISTS box CASCADE;
RESET client_min_messages;

CREATE TEMP VIEW capacity AS
SELECT r.resource_id, r.units_released, r.free_units,
       count(o.*) FILTER (WHERE o.state = 'OPEN') AS open,
       count(o.*) FILTER (WHERE o.state = 'ACCEPTED') AS accepted,
       count(o.*) FILTER (WHERE o.state = 'FAILED') AS failed,
       r.units_released = r.free_units
           + count(o.*) FILTER (WHERE o.state IN ('OPEN', 'ACCEPTED', 'FAILED')) AS conserved
FROM waitlist.resource r
LEFT JOIN waitlist.offer o ON o.resource_id = r.resource_id
GROUP BY r.resource_id ORDER BY r.resource_id;

CREATE TEMP VIEW events AS
SELECT resource_id, event_id, quantity FROM waitlist.capacity_event
ORDER BY resource_id, event_id;

CREATE TEMP VIEW offered AS
SELECT e.resource_id, e.user_id, o.state
FROM waitlist.offer o
JOIN waitlist.entry e ON e.resource_id = o.resource_id AND e.entry_id = o.entry_id
ORDER BY o.offer_id;

-- the booking system
CREATE SCHEMA box;
CREATE TABLE box.reservations (
    reservation_id integer PRIMARY KEY,
    concert text,
    seats integer,
    status text NOT NULL DEFAULT 'active'
);
CREATE TRIGGER reservations_waitlist
    AFTER UPDATE OR DELETE ON box.reservations
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status', 'cancelled');
INSERT INTO box.reservations (reservation_id, concert, seats) VALUES
    (1, 'concert-1', 2), (2, 'concert-1', 1), (3, 'concert-1', 3),
    (4, 'other-concert', 4), (5, 'concert-1', 1), (6, 'concert-1', NULL),
    (7, 'concert-1', 0), (8, NULL, 2), (9, 'concert-1', -1), (10, 'concert-1', 2000000);

SELECT waitlist_create_resource('concert-1', '10 minutes');
SELECT count(waitlist_join('concert-1', 'fan' || i)) AS joined FROM generate_series(1, 8) i;

--
-- Cancelling reservation 1 gives its two seats to fan1 and fan2
--
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id = 1;
SELECT * FROM events;
SELECT * FROM offered;
SELECT * FROM capacity;

-- cancelling it again, or after it was reactivated, releases nothing more
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id = 1;
UPDATE box.reservations SET status = 'active' WHERE reservation_id = 1;
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id = 1;
-- deleting the cancelled row releases nothing either
DELETE FROM box.reservations WHERE reservation_id = 1;
-- updates that do not cancel release nothing
UPDATE box.reservations SET seats = 1 WHERE reservation_id = 2;
UPDATE box.reservations SET status = 'checked in' WHERE reservation_id = 2;
SELECT * FROM events;
SELECT * FROM capacity;

--
-- Deleting a reservation that was not cancelled releases its seats
--
DELETE FROM box.reservations WHERE reservation_id = 3;
SELECT * FROM events;
SELECT * FROM offered;
SELECT * FROM capacity;

--
-- A cancellation that is rolled back releases nothing
--
BEGIN;
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id = 2;
SELECT * FROM capacity;
ROLLBACK;
SELECT * FROM events;
SELECT * FROM capacity;

--
-- Rows the waitlist does not care about: another concert, no concert, NULL
-- or 0 seats
--
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id IN (4, 6, 7, 8);
SELECT reservation_id, status FROM box.reservations WHERE reservation_id IN (4, 6, 7, 8)
ORDER BY reservation_id;
SELECT * FROM events;

--
-- A negative or oversized quantity is an error (22023), and the
-- cancellation is undone with it
--
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id = 9;
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id = 10;
SELECT reservation_id, status FROM box.reservations WHERE reservation_id IN (9, 10)
ORDER BY reservation_id;

--
-- Several rows in one statement: one event per row
--
UPDATE box.reservations SET status = 'cancelled' WHERE reservation_id IN (2, 5);
SELECT * FROM events;
SELECT * FROM offered;
SELECT * FROM capacity;

--
-- A fixed quantity instead of a column, and a composite primary key
--
CREATE TABLE box.tickets (
    show_id text,
    row_no integer,
    seat text,
    state text,
    PRIMARY KEY (show_id, row_no, seat)
);
CREATE TRIGGER tickets_waitlist
    AFTER UPDATE OR DELETE ON box.tickets
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('show_id', '1', 'state', 'refunded');
INSERT INTO box.tickets VALUES ('concert-1', 7, 'A', 'sold'), ('concert-1', 7, 'B', 'sold');
UPDATE box.tickets SET state = 'refunded' WHERE seat = 'A';
DELETE FROM box.tickets WHERE seat = 'B';
SELECT * FROM events;
SELECT * FROM capacity;

--
-- Bad configurations fail when the trigger fires, and undo the statement
--
CREATE TABLE box.bad (id integer PRIMARY KEY, concert text, seats integer, status text);
INSERT INTO box.bad VALUES (1, 'concert-1', 1, 'active');
-- a column that does not exist: 42703, whichever argument it is
CREATE TRIGGER bad_resource AFTER UPDATE ON box.bad
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('no_such_column', 'seats', 'status', 'cancelled');
UPDATE box.bad SET status = 'cancelled';
DROP TRIGGER bad_resource ON box.bad;
CREATE TRIGGER bad_quantity AFTER UPDATE ON box.bad
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'no_such_column', 'status', 'cancelled');
UPDATE box.bad SET status = 'cancelled';
DROP TRIGGER bad_quantity ON box.bad;
CREATE TRIGGER bad_status AFTER UPDATE ON box.bad
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'no_such_column', 'cancelled');
UPDATE box.bad SET status = 'cancelled';
DROP TRIGGER bad_status ON box.bad;
-- a wrong number of arguments: 22023
CREATE TRIGGER bad_args AFTER UPDATE ON box.bad
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status');
UPDATE box.bad SET status = 'cancelled';
DROP TRIGGER bad_args ON box.bad;
-- not AFTER UPDATE OR DELETE FOR EACH ROW: 39P01
CREATE TRIGGER bad_before BEFORE UPDATE ON box.bad
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status', 'cancelled');
UPDATE box.bad SET status = 'cancelled';
DROP TRIGGER bad_before ON box.bad;
CREATE TRIGGER bad_insert AFTER INSERT ON box.bad
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status', 'cancelled');
INSERT INTO box.bad VALUES (2, 'concert-1', 1, 'active');
DROP TRIGGER bad_insert ON box.bad;
CREATE TRIGGER bad_statement AFTER UPDATE ON box.bad
    FOR EACH STATEMENT EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status', 'cancelled');
UPDATE box.bad SET status = 'cancelled';
DROP TRIGGER bad_statement ON box.bad;
SELECT id, status FROM box.bad ORDER BY id;
-- a table without a primary key: 55000, since no event id can be derived
CREATE TABLE box.no_pkey (concert text, seats integer, status text);
CREATE TRIGGER no_pkey_waitlist AFTER UPDATE OR DELETE ON box.no_pkey
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status', 'cancelled');
INSERT INTO box.no_pkey VALUES ('concert-1', 1, 'active');
UPDATE box.no_pkey SET status = 'cancelled';
DELETE FROM box.no_pkey;
SELECT * FROM box.no_pkey;
-- none of this released anything
SELECT * FROM events;
SELECT * FROM capacity;

--
-- The trigger can be called only as a trigger
--
SELECT waitlist_capacity_trigger();

--
-- Every release came from a trigger, one per row, and the line moved on
-- in order
--
SELECT * FROM offered;
SELECT * FROM capacity;

--
-- The booking system's own writes fail only for a configuration error or a
-- waitlisted resource's quantity that cannot be released; a second
-- waitlisted concert keeps these releases apart from the ones above
--
SELECT waitlist_create_resource('concert-2', '10 minutes');
SELECT count(waitlist_join('concert-2', 'fan' || i)) AS joined FROM generate_series(1, 30) i;
CREATE TEMP VIEW events_2 AS
SELECT event_id, quantity FROM waitlist.capacity_event WHERE resource_id = 'concert-2'
ORDER BY received_at, event_id;

-- a numeric quantity column: whole numbers release, whatever the scale
-- (1.0 failed every cancellation and delete with 22P02)
CREATE TABLE box.orders (order_id bigint PRIMARY KEY, concert text, seats numeric(10,2), status text);
CREATE TRIGGER orders_waitlist AFTER UPDATE OR DELETE ON box.orders
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status', 'cancelled');
INSERT INTO box.orders VALUES (1, 'concert-2', 2, 'active'), (2, 'concert-2', 1.5, 'active'),
    (3, 'elsewhere', 2.5, 'active'), (4, 'elsewhere', 5000000, 'active'), (5, 'concert-2', 1, 'active');
UPDATE box.orders SET status = 'cancelled' WHERE order_id = 1;
DELETE FROM box.orders WHERE order_id = 5;
SELECT * FROM events_2;
-- a fraction of a seat of a waitlisted resource cannot be released: 22023,
-- and the statement is undone
UPDATE box.orders SET status = 'cancelled' WHERE order_id = 2;
\set VERBOSITY default
DELETE FROM box.orders WHERE order_id = 2;
\set VERBOSITY sqlstate
-- rows of resources without a waitlist never fail, whatever their quantity
-- (1.0: 22P02 for 2.5 and 22023 for 5,000,000)
UPDATE box.orders SET status = 'cancelled' WHERE order_id IN (3, 4);
DELETE FROM box.orders WHERE order_id IN (3, 4);
UPDATE box.reservations SET concert = 'elsewhere' WHERE reservation_id IN (9, 10);
DELETE FROM box.reservations WHERE reservation_id IN (9, 10);
SELECT order_id, status FROM box.orders ORDER BY order_id;
SELECT count(*) AS reservations_9_10 FROM box.reservations WHERE reservation_id IN (9, 10);

-- other column types: a smallint domain, double precision and digits in
-- text for the quantity; a char(12) status, whose value prints padded
-- (1.0 never matched it), and a boolean one given as 'true'
CREATE DOMAIN box.seat_count AS smallint CHECK (VALUE >= 0);
CREATE TABLE box.typed (id integer PRIMARY KEY, concert varchar(40), small box.seat_count,
                        dbl double precision, txt text, status char(12));
INSERT INTO box.typed VALUES (1, 'concert-2', 1, 1.0, '1', 'active'), (2, 'concert-2', 1, 1.0, '1', 'active'),
    (3, 'concert-2', 1, 1.0, '1', 'active'), (4, 'concert-2', 1, 0.5, 'one', 'active');
CREATE TRIGGER typed_small AFTER UPDATE OR DELETE ON box.typed
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'small', 'status', 'cancelled');
UPDATE box.typed SET status = 'cancelled' WHERE id = 1;
DROP TRIGGER typed_small ON box.typed;
CREATE TRIGGER typed_dbl AFTER UPDATE OR DELETE ON box.typed
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'dbl', 'status', 'cancelled');
UPDATE box.typed SET status = 'cancelled' WHERE id = 2;
UPDATE box.typed SET status = 'cancelled' WHERE id = 4;
DROP TRIGGER typed_dbl ON box.typed;
CREATE TRIGGER typed_txt AFTER UPDATE OR DELETE ON box.typed
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'txt', 'status', 'cancelled');
UPDATE box.typed SET status = 'cancelled' WHERE id = 3;
UPDATE box.typed SET status = 'cancelled' WHERE id = 4;
DROP TRIGGER typed_txt ON box.typed;
CREATE TABLE box.flags (id integer PRIMARY KEY, concert text, seats integer, refunded boolean);
CREATE TRIGGER flags_waitlist AFTER UPDATE OR DELETE ON box.flags
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'refunded', 'true');
INSERT INTO box.flags VALUES (1, 'concert-2', 1, false);
UPDATE box.flags SET refunded = true;
SELECT * FROM events_2;
-- a status value the column's type cannot hold is a configuration error
CREATE TRIGGER flags_bad AFTER UPDATE ON box.flags
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'refunded', 'cancelled');
UPDATE box.flags SET refunded = false;
DROP TRIGGER flags_bad ON box.flags;

-- composite keys whose values hold commas or quotes give distinct event ids
-- (1.0 joined them with bare commas: both rows became 'box.pairs:x,y,z' and
-- the second release was dropped as a duplicate)
CREATE TABLE box.pairs (a text, b text, concert text, status text, PRIMARY KEY (a, b));
CREATE TRIGGER pairs_waitlist AFTER UPDATE OR DELETE ON box.pairs
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', '1', 'status', 'gone');
INSERT INTO box.pairs VALUES ('x,y', 'z', 'concert-2', 'ok'), ('x', 'y,z', 'concert-2', 'ok'),
    ('say "hi"', '', 'concert-2', 'ok'), ('', '', 'concert-2', 'ok');
DELETE FROM box.pairs;
SELECT * FROM events_2 WHERE event_id LIKE 'box.pairs:%';
-- a key too long for an event id is hashed, with the table, to a fixed form
-- that no unhashed id can take; distinct long keys stay distinct
INSERT INTO box.pairs VALUES (repeat('k', 250) || '1', 'x', 'concert-2', 'ok'),
                             (repeat('k', 250) || '2', 'x', 'concert-2', 'ok');
UPDATE box.pairs SET status = 'gone';
SELECT event_id ~ '^sha256:[0-9a-f]{64}$' AS hashed, count(*)
FROM waitlist.capacity_event WHERE resource_id = 'concert-2' AND event_id NOT LIKE 'box.%'
GROUP BY 1;

-- a partitioned booking table: moving a row to another partition is an
-- UPDATE, which PostgreSQL runs as a DELETE on the old partition; it
-- releases nothing (1.0 released the row's seats).  The event id names the
-- partitioned table, so a row keeps its identity wherever it lives.
CREATE TABLE box.booked (id integer, region text, concert text, seats integer, status text,
                         PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE box.booked_eu PARTITION OF box.booked FOR VALUES IN ('eu');
CREATE TABLE box.booked_us PARTITION OF box.booked FOR VALUES IN ('us');
CREATE TRIGGER booked_waitlist AFTER UPDATE OR DELETE ON box.booked
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', 'seats', 'status', 'cancelled');
INSERT INTO box.booked VALUES (1, 'eu', 'concert-2', 3, 'active'), (2, 'eu', 'concert-2', 1, 'active');
UPDATE box.booked SET region = 'us' WHERE id = 1;
SELECT tableoid::regclass, id, region FROM box.booked ORDER BY id;
SELECT * FROM events_2 WHERE event_id LIKE 'box.booked%';
-- cancelling and deleting in a partition release as anywhere else
UPDATE box.booked SET status = 'cancelled' WHERE id = 1;
DELETE FROM box.booked_eu WHERE id = 2;
DELETE FROM box.booked WHERE id = 1;
SELECT * FROM events_2 WHERE event_id LIKE 'box.booked%';

-- schema and table names are quoted as identifiers in the event id
CREATE SCHEMA "Box Office";
CREATE TABLE "Box Office"."Seats.Sold" (id integer PRIMARY KEY, concert text, status text);
CREATE TRIGGER seats_waitlist AFTER UPDATE OR DELETE ON "Box Office"."Seats.Sold"
    FOR EACH ROW EXECUTE FUNCTION waitlist_capacity_trigger('concert', '1', 'status', 'cancelled');
INSERT INTO "Box Office"."Seats.Sold" VALUES (1, 'concert-2', 'active');
DELETE FROM "Box Office"."Seats.Sold";
SELECT * FROM events_2 WHERE event_id LIKE '"Box%';

-- every unit went to the line, and concert-2 holds together
SELECT * FROM capacity WHERE resource_id = 'concert-2';
SELECT invariant, resource_id, detail FROM waitlist_check('concert-2');

SET client_min_messages = warning;
DROP SCHEMA box CASCADE;
DROP SCHEMA "Box Office" CASCADE;
RESET client_min_messages;
