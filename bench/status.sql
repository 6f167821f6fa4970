-- Scenario 7: status of one entry (-D entry=ENTRY_ID)
SELECT * FROM waitlist_status(:entry);
