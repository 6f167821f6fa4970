-- an expiry sweep next to the workers' own expiries
SELECT waitlist_sweep(50);
