-- accept an open offer (see stress_pick_offer), twice with the same
-- key (a double tap); other clients pick the same offers with the same or
-- the other key at the same time
\set k random(0, 7)
\set key random(1, 2)
SELECT stress_pick_offer(:k) AS offer \gset
SELECT stress_accept(:offer, :key);
SELECT stress_accept(:offer, :key);
