-- scenario 11: one metrics scrape, what a Prometheus endpoint runs
SELECT waitlist_metrics();
SELECT * FROM waitlist.resource_stats;
SELECT * FROM waitlist.outbox_stats;
SELECT * FROM waitlist.lag_stats;
