-- Scenario 16, libpq side: the statement the gateway sends for a join
-- (gateway/http.c), waitlist_join of a new fan with the look-ups its
-- answer carries, straight from the client in one round trip
-- (pgbench -M prepared -D res=RESOURCE -D run=N -D n=0; run tells the
-- runs of a side apart, and a client's n counts its joins, so every user
-- id is new).  The timestamp's format is the gateway's, its colons written
-- \072: pgbench would read :MI and :SS as variables
\set n :n + 1
\set u (:run * 100 + :client_id) * 1000000000 + :n
SELECT j.entry_id, o.joined_in_transaction, s.state, s.position, s.offer_id,
       pg_catalog.to_char((s.offer_expires_at) AT TIME ZONE 'UTC', E'YYYY-MM-DD"T"HH24\072MI\072SS.US"Z"'), s.band
FROM waitlist_join(:res, 'p' || :u, 0, 1) AS j(entry_id),
     LATERAL waitlist_entry_owner(j.entry_id) o, LATERAL waitlist_status(j.entry_id) s;
