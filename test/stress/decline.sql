-- decline an open offer (see stress_pick_offer), twice
\set k random(0, 7)
SELECT stress_pick_offer(:k) AS offer \gset
SELECT stress_decline(:offer);
SELECT stress_decline(:offer);
