-- the booking system returns 1 to 3 units, mostly of the hot resources;
-- event ids repeat (at-least-once delivery, see stress_release), so most
-- releases are refused as repeats
\set hot random(1, 100)
\set cold random(1, 200)
\set qty random(1, 3)
\set ev random(1, 20)
SELECT stress_release(:hot, :cold, :qty, :ev);
