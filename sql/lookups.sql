-- The look-ups for front ends: whose an entry or offer is, whether this
-- transaction's join made the entry (a join, not a double tap), and the
-- offer a token names, as the offer page shows it.
\set VERBOSITY sqlstate
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- a fresh install, so that this file does not depend on the files before it
DROP EXTENSION IF EXISTS waitlist CASCADE;
CREATE EXTENSION waitlist;
SET waitlist.promotion_mode = inline;
SELECT waitlist_create_resource('look', '10 minutes');

-- a join and its look-up in one transaction: the join made the entry
BEGIN;
SELECT waitlist_join('look', 'ann') AS ann \gset
SELECT user_id, resource_id, joined_in_transaction FROM waitlist_entry_owner(:ann);
COMMIT;
-- a double tap in another transaction finds it, and did not make it
BEGIN;
SELECT waitlist_join('look', 'ann') = :ann AS same_entry;
SELECT joined_in_transaction FROM waitlist_entry_owner(:ann);
COMMIT;
SELECT joined_in_transaction FROM waitlist_entry_owner(:ann);

-- an offer: its owner, and what its token shows through its life
SELECT waitlist_join('look', 'bob') AS bob \gset
SELECT waitlist_release('look', 1, 'look-1');
SELECT offer_id AS ann_offer FROM waitlist.offer WHERE entry_id = :ann \gset
SELECT user_id, resource_id, entry_id = :ann AS ann_entry FROM waitlist_offer_owner(:ann_offer);
SELECT waitlist_offer_token(:ann_offer) AS ann_token \gset
SELECT offer_id = :ann_offer AS ann_offer, resource_id, state, reservation_ref,
       expires_at = (SELECT expires_at FROM waitlist.offer WHERE offer_id = :ann_offer) AS deadline
FROM waitlist_token_offer(:'ann_token');
SELECT state FROM waitlist_accept_token(:'ann_token', 'tap-1');
SELECT state, reservation_ref FROM waitlist_token_offer(:'ann_token');
-- the next offer, open before its deadline
SELECT waitlist_release('look', 1, 'look-2');
SELECT offer_id AS bob_offer FROM waitlist.offer WHERE entry_id = :bob \gset
SELECT waitlist_offer_token(:bob_offer) AS bob_token \gset
SELECT state, expires_at > now() AS open_now FROM waitlist_token_offer(:'bob_token');

-- bad input
SELECT * FROM waitlist_entry_owner(NULL);
SELECT * FROM waitlist_entry_owner(-1);
SELECT * FROM waitlist_offer_owner(NULL);
SELECT * FROM waitlist_offer_owner(-1);
SELECT * FROM waitlist_token_offer(NULL);
SELECT * FROM waitlist_token_offer('');
SELECT * FROM waitlist_token_offer(:'ann_token' || 'x');
