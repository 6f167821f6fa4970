-- a random user leaves a random resource (waiting, offered, or not in line)
\set pick random(1, 1000)
\set usr random(1, 1500)
SELECT stress_leave(:pick, :usr);
