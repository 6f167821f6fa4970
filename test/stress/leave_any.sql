-- a leave by entry id, also of entries that ended or do not exist
\set id random(1, 40000)
SELECT stress_leave_id(:id);
