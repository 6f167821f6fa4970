-- Scenario 8 baseline: the textbook inline release of one unit of one
-- resource (-D res=RESOURCE), bench.textbook_release
\set e random(1, 999999999999)
SELECT bench.textbook_release(:res, 1, 'r' || :client_id || '-' || :e);
