# Proof under load: many clients join (parties of mixed sizes where the
# resource seats them, strict on one hot resource, skip_to_fit on cold ones), leave, release (with repeated event
# ids), promote, accept (with double taps and a booking function that
# sometimes conflicts and sometimes fails transiently), decline and sweep on
# three hot and two hundred cold resources for a fixed time, with two
# promotion workers folding events and expiring 1-2 second offers.  Once the
# traffic stops and the workers have drained, waitlist_check() finds no
# violated invariant, every released unit is accounted for, every booking
# belongs to exactly one accepted offer, and the outbox and the accept
# requests agree with the offers.  The pgbench scripts and the fixtures are
# in test/stress/.

use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql wait_until);

my $stress_dir = dirname(__FILE__) . '/../stress';
my $duration = 15;
my $clients = 8;
my $rate = 4000;

my $node = PostgreSQL::Test::Cluster->new('stress');
use_node($node);
$node->init;
my $pkglibdir = $node->config_data('--pkglibdir');
my $preload = -e "$pkglibdir/pg_cron.so" ? 'pg_cron,waitlist' : 'waitlist';
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = '$preload'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.workers = 2
waitlist.naptime = '200ms'
track_commit_timestamp = on
max_connections = 40
log_statement = none
});
$node->start;

# waitlist_check()'s rows, one per line; empty when every invariant holds
my $violations = q{SELECT invariant || ' ' || coalesce(resource_id, '') || ' '
  || coalesce(entity, '') || ' ' || coalesce(entity_id::text, '') || ': ' || detail
  FROM waitlist_check() ORDER BY 1};

wait_until(
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'",
	'2', 'two waitlist workers run');

sql(slurp_file("$stress_dir/setup.sql"));
is(sql('SELECT count(*) FROM waitlist.resource'), '203', '3 hot and 200 cold resources');

# some fans in line before the traffic starts
sql(q{SELECT count(waitlist_join('hot-' || h, 'u' || u, (u % 8 = 0)::integer))
  FROM generate_series(1, 3) h, generate_series(1, 300) u});
sql(q{SELECT count(waitlist_join('cold-' || c, 'u' || u))
  FROM generate_series(1, 200) c, generate_series(1, 5) u});

# --- the load ---------------------------------------------------------------

# At most $rate transactions a second, so that the data the checks read
# stays about the same size on a faster machine.
my @scripts = (
	'join.sql@30', 'leave.sql@6', 'leave_any.sql@2', 'release.sql@14',
	'promote.sql@4', 'accept.sql@18', 'decline.sql@6', 'sweep.sql@2');
my $log_offset = -s $node->logfile;
my ($out, $err) = ('', '');
my @pgbench = (
	'pgbench', '-n', '-T', $duration, '-R', $rate, '-c', $clients, '-j', 2,
	'-h', $node->host, '-p', $node->port,
	(map { ('-f', "$stress_dir/$_") } @scripts), 'postgres');
my $started = time;
my $pgbench_ok = IPC::Run::run(\@pgbench, '>', \$out, '2>', \$err);
note "pgbench ran for " . (time - $started) . " s";
note $out;
ok($pgbench_ok, 'pgbench ran every client to the end: no unexpected error')
  or diag "pgbench stderr:\n$err";
like($out, qr/number of failed transactions: 0 /, 'no failed transactions');
my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
cmp_ok($processed // 0, '>', 1000, 'the clients got real work done');

# --- drain --------------------------------------------------------------------

# Nothing is left for the workers when no event is pending, no offer is
# open past its deadline (give the worker a moment past it) and every
# invariant holds, the liveness one included.  (The polls leave out the
# FIFO check, the expensive one; it runs once below.)
my $drain_started = time;
wait_until(
	q{SELECT NOT EXISTS (SELECT 1 FROM waitlist.capacity_event WHERE state <> 'PROCESSED')
  AND NOT EXISTS (SELECT 1 FROM waitlist.offer
                  WHERE state = 'OPEN' AND expires_at < clock_timestamp() - interval '500 milliseconds')
  AND NOT EXISTS (SELECT 1 FROM waitlist_check(NULL, interval '0'))},
	't',
	'the workers drain: no pending event, no overdue offer, no violation');
note "drained in " . (time - $drain_started) . " s";

# The tables grew a hundredfold in seconds: fresh statistics, as autovacuum
# would gather a little later, keep the plans of the checks sane.
sql('ANALYZE');

# --- the invariants -------------------------------------------------------------

my $check_started = time;
my $found = sql($violations);
note "waitlist_check() took " . (time - $check_started) . " s";
is($found, '', 'waitlist_check() returns no rows after the stress run')
  or diag "waitlist_check():\n$found";

is( sql(
		"SELECT count(*) FILTER (WHERE state = 'PENDING') || '|' || count(*) FILTER (WHERE state = 'DEAD')"
		  . " FROM waitlist.capacity_event"),
	'0|0',
	'every capacity event is PROCESSED');

# one statement, one snapshot: the workers may still be expiring offers
my $balance = sql(
	q{SELECT (SELECT sum(quantity) FROM waitlist.capacity_event WHERE state = 'PROCESSED'),
       (SELECT sum(units_released) FROM waitlist.resource),
       (SELECT sum(free_units) FROM waitlist.resource)
       + (SELECT sum(units) FROM waitlist.offer WHERE state IN ('OPEN', 'ACCEPTED', 'FAILED'))});
my ($events_units, $released, $held) = split /\|/, $balance;
note "units: $events_units from events, $released released, $held free or in offers";
ok($events_units > 0 && $events_units == $released && $released == $held,
	'processed event units = units released = free + units of open, accepted and failed offers')
  or diag "events $events_units, released $released, free + offers $held";

is( sql(
		q{SELECT count(*) FROM waitlist.resource r
  WHERE r.units_released <> (SELECT coalesce(sum(quantity), 0) FROM waitlist.capacity_event e
                             WHERE e.resource_id = r.resource_id AND e.state = 'PROCESSED')
     OR r.units_released <> r.free_units + (SELECT coalesce(sum(o.units), 0) FROM waitlist.offer o
                             WHERE o.resource_id = r.resource_id
                               AND o.state IN ('OPEN', 'ACCEPTED', 'FAILED'))}),
	'0',
	'the balance holds for each resource');

# bookings: every seat the booking function sold belongs to exactly one
# ACCEPTED offer, under the reference the offer stores, and vice versa
is( sql(
		q{SELECT count(*) FROM stress_seat s
  WHERE s.seat_no > 0 AND NOT EXISTS (
    SELECT 1 FROM waitlist.offer o
    WHERE o.resource_id = s.resource_id AND o.offer_id = s.offer_id
      AND o.state = 'ACCEPTED' AND o.reservation_ref = 'seat-' || s.seat_no)}),
	'0',
	'every booked seat belongs to an ACCEPTED offer with its reference');
is( sql(
		q{SELECT count(*) FROM waitlist.offer o
  JOIN waitlist.resource r USING (resource_id)
  WHERE o.state = 'ACCEPTED'
    AND (r.booking_function IS NULL) <> (o.reservation_ref IS NULL)}),
	'0',
	'ACCEPTED offers have a reference exactly where a booking function booked them');
is( sql(
		q{SELECT (SELECT count(*) FROM stress_seat WHERE seat_no > 0)
     = (SELECT count(*) FROM waitlist.offer WHERE state = 'ACCEPTED' AND reservation_ref IS NOT NULL)
   AND (SELECT count(*) FROM stress_seat WHERE seat_no > 0)
     = (SELECT count(DISTINCT (resource_id, offer_id)) FROM stress_seat WHERE seat_no > 0)}),
	't',
	'bookings made = ACCEPTED offers with a reference; no offer booked twice');

# the outbox: one offer_created per offer, and one settling row per settled
# offer, of the kind its state says
is( sql(
		q{SELECT count(*) FROM waitlist.offer o
  CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE b.event_type = 'offer_created') AS created,
           count(*) FILTER (WHERE b.event_type <> 'offer_created') AS settled,
           count(*) FILTER (WHERE b.event_type = 'offer_' || lower(o.state)) AS matching
    FROM waitlist.outbox b WHERE b.resource_id = o.resource_id AND b.offer_id = o.offer_id) b
  WHERE b.created <> 1
     OR b.settled <> CASE WHEN o.state = 'OPEN' THEN 0 ELSE 1 END
     OR (o.state <> 'OPEN' AND b.matching <> 1)}),
	'0',
	'every offer has exactly one offer_created row and one row for how it ended');

# accept requests: every recorded answer is the offer's answer
is( sql(
		q{SELECT count(*) FROM waitlist.accept_request a
  JOIN waitlist.offer o ON o.resource_id = a.resource_id AND o.offer_id = a.offer_id
  WHERE a.state IS DISTINCT FROM o.state
     OR a.reservation_ref IS DISTINCT FROM o.reservation_ref}),
	'0',
	'every recorded accept request answers what the offer became');

is( sql(
		q{SELECT count(*) FROM waitlist.offer o
  WHERE o.state IN ('ACCEPTED', 'FAILED')
    AND NOT EXISTS (SELECT 1 FROM waitlist.accept_request a
                    WHERE a.resource_id = o.resource_id AND a.offer_id = o.offer_id
                      AND a.idempotency_key = o.idempotency_key AND a.state = o.state)}),
	'0',
	'every ACCEPTED or FAILED offer has the accept request that decided it');

# --- the run did what it claims ----------------------------------------------

my %caught = map { split /\|/ } split /\n/,
  sql("SELECT sqlstate, count(*) FROM stress_caught GROUP BY 1");
my %outcome = map { my @f = split /\|/; ("$f[0] $f[1]" => $f[2]) } split /\n/,
  sql("SELECT op, outcome, count(*) FROM stress_outcome GROUP BY 1, 2");
my %offers = map { split /\|/ } split /\n/,
  sql("SELECT state, count(*) FROM waitlist.offer GROUP BY 1");
note 'caught: ' . join(', ', map { "$_ $caught{$_}" } sort keys %caught);
note 'outcomes: ' . join(', ', map { "$_ $outcome{$_}" } sort keys %outcome);
note 'offers: ' . join(', ', map { "$_ $offers{$_}" } sort keys %offers);

cmp_ok($outcome{'release repeated'} // 0, '>', 0, 'repeated event ids were delivered and refused');
cmp_ok($outcome{'accept ACCEPTED'} // 0, '>', 0, 'accepts booked seats');
cmp_ok($outcome{'accept FAILED'} // 0, '>', 0, 'accepts hit booking conflicts');
cmp_ok(($caught{P0001} // 0) + ($caught{40001} // 0), '>', 0,
	'accepts hit transient booking errors');
cmp_ok(($caught{WL002} // 0) + ($caught{WL003} // 0), '>', 0,
	'accepts and declines came too late');
foreach my $state (qw(ACCEPTED FAILED DECLINED EXPIRED REVOKED))
{
	cmp_ok($offers{$state} // 0, '>', 0, "some offers ended $state");
}
is($caught{'40P01'} // 0, 0, 'no deadlock between the API calls');

# nothing the clients did not see either: the workers logged no error
my $log = slurp_file($node->logfile, $log_offset);
my @errors = grep { /\b(ERROR|FATAL|PANIC):/ } split /\n/, $log;
is(scalar(@errors), 0, 'the server logged no error during the run')
  or diag join("\n", @errors[ 0 .. ($#errors < 20 ? $#errors : 19) ]);
is(sql("SELECT count(*) FROM waitlist_worker_status() WHERE last_error IS NOT NULL"),
	'0', 'the workers report no error');

$node->stop;
done_testing();
