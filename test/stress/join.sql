-- a random user joins a random resource; one in eight with priority
\set pick random(1, 1000)
\set usr random(1, 1500)
\set prio random(1, 8)
SELECT stress_join(:pick, :usr, :prio);
