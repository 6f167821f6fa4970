-- Scenario 13: status of a fan at a random rank of a line loaded in
-- entry_id order (-D first=ENTRY_ID_OF_RANK_1 -D depth=N)
\set r random(1, :depth)
SELECT * FROM waitlist_status(:first + :r - 1);
