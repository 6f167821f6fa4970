-- Scenario 6 baseline: accept the next open offer once
SELECT offer_id AS o FROM bench.accept_queue
WHERE kind = 'single' AND n = (SELECT nextval('bench.accept_single_seq')) \gset
SELECT state FROM waitlist_accept(:o, 'k' || :o);
