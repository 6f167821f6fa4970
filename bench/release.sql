-- Scenarios 2b and 8: release one unit of one resource (-D res=RESOURCE);
-- the session's waitlist.promotion_mode decides who promotes
\set e random(1, 999999999999)
SELECT waitlist_release(:res, 1, 'r' || :client_id || '-' || :e);
