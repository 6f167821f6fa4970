-- Scenario 12 baseline: accept the next open offer of a resource that books
-- in the database (bench.book, in the accept's transaction)
SELECT offer_id AS o FROM bench.accept_queue
WHERE kind = 'booked' AND n = (SELECT nextval('bench.accept_booked_seq')) \gset
SELECT state FROM waitlist_accept(:o, 'k' || :o);
