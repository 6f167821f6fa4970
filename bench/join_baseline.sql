-- Scenario 1 baseline: a bare INSERT into a table with waitlist.entry's indexes.
-- A random user id may repeat: like a join's double tap, it inserts nothing.
\set u random(1, 999999999999)
INSERT INTO bench.join_base (resource_id, user_id, rank_key) VALUES (:res, 'u' || :u, 0) ON CONFLICT DO NOTHING;
