-- Scenario 12: one booking through the external accept saga.  The accept
-- (OPEN -> ACCEPTING, one booking_requested row), then, in one transaction,
-- what a booking relay does once the booking service answered 201
-- (bench.relay_booking): claim a booking row (the oldest deliverable one,
-- which may be another client's accept), confirm the offer it names and ack
-- the row.
SELECT offer_id AS o FROM bench.accept_queue
WHERE kind = 'saga' AND n = (SELECT nextval('bench.accept_saga_seq')) \gset
SELECT state FROM waitlist_accept(:o, 'k' || :o);
SELECT bench.relay_booking();
