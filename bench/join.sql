-- Scenario 1 and 2a: one join by a new fan (pgbench -M prepared -D res=RESOURCE)
\set u random(1, 999999999999)
SELECT waitlist_join(:res, 'u' || :u);
