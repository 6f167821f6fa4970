-- Scenario 15: one join by a new fan, to one of 20 resources (pgbench -M prepared)
\set r random(1, 20)
\set u random(1, 999999999999)
SELECT waitlist_join('s15-' || :r, 'u' || :u);
