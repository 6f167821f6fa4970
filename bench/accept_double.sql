-- Scenario 6: accept the next open offer twice with the same key (a double
-- tap; the second request returns the stored outcome)
SELECT offer_id AS o FROM bench.accept_queue
WHERE kind = 'double' AND n = (SELECT nextval('bench.accept_double_seq')) \gset
SELECT state FROM waitlist_accept(:o, 'k' || :o);
SELECT state FROM waitlist_accept(:o, 'k' || :o);
