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

SET client_min_messages = warning;
DROP SCHEMA box CASCADE;
RESET client_min_messages;
