-- Scenario 13: status of a fan at a random rank of a line loaded in
-- entry_id order (-D first=ENTRY_ID_OF_RANK_1 -D depth=N)
\set e :first + random(1, :depth) - 1
SELECT * FROM waitlist_status(:e);
