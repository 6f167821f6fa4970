-- Scenario 2: a new fan joins the back of the line, then a released unit
-- promotes the head (inline), so the depth stays put (-D res=RESOURCE;
-- run with -r for the per-statement latencies)
\set u random(1, 999999999999)
\set e random(1, 999999999999)
SELECT waitlist_join(:res, 'u' || :u);
SELECT waitlist_release(:res, 1, 'd' || :client_id || '-' || :e);
