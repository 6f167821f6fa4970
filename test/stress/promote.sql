-- an explicit promotion, all free units or at most a few
\set pick random(1, 1000)
\set max random(0, 3)
SELECT stress_promote(:pick, :max);
