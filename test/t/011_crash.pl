# Proof under faults: the stress load of 010_stress.pl is cut short by an
# immediate shutdown, and then by the SIGKILL of one client backend (a crash
# restart of the whole server); the owner worker of a resource is SIGKILLed
# again and again while 500 units released one by one are being promoted.
# After each recovery the workers drain, waitlist_check() finds no violated
# invariant, and every committed capacity event was processed exactly once.

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

my $node = PostgreSQL::Test::Cluster->new('crash');
use_node($node);
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.workers = 2
waitlist.naptime = '200ms'
track_commit_timestamp = on
max_connections = 40
log_statement = none
restart_after_crash = on
});
$node->start;

my $workers_running =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'";

# The stress load in the background, for up to $seconds.
sub start_load
{
	my ($seconds) = @_;
	my ($out, $err) = ('', '');
	my @scripts = (
		'join.sql@30', 'leave.sql@6', 'leave_any.sql@2', 'release.sql@14',
		'promote.sql@4', 'accept.sql@18', 'decline.sql@6', 'sweep.sql@2');
	# the clients' application_name, to find them in pg_stat_activity
	local $ENV{PGAPPNAME} = 'stress';
	my $h = IPC::Run::start(
		[
			'pgbench', '-n', '-T', $seconds, '-R', 3000, '-c', 8, '-j', 2,
			'-h', $node->host, '-p', $node->port,
			(map { ('-f', "$stress_dir/$_") } @scripts), 'postgres'
		],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return ($h, \$out, \$err);
}

# pgbench ends once the crash has taken all its connections
sub finish_load
{
	my ($h, $err) = @_;
	eval { $h->finish; };
	my @lines = split /\n/, $$err;
	note "pgbench, cut short: " . join("\n", @lines[ 0 .. ($#lines < 2 ? $#lines : 2) ]);
}

# The load is under way: releases committed since $since events.
sub wait_for_load
{
	my ($since, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	wait_until(
		"SELECT count(*) >= $since + 300 AND count(*) FILTER (WHERE state = 'PROCESSED') > $since"
		  . " FROM waitlist.capacity_event",
		't', $what);
}

# After a crash: the server and the workers are back, the workers drain,
# and every invariant holds.
sub check_recovered
{
	my ($what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	wait_until($workers_running, '2', "$what: the workers run again");
	wait_until(
		q{SELECT NOT EXISTS (SELECT 1 FROM waitlist.capacity_event WHERE state <> 'PROCESSED')
  AND NOT EXISTS (SELECT 1 FROM waitlist.offer
                  WHERE state = 'OPEN' AND expires_at < clock_timestamp() - interval '500 milliseconds')
  AND NOT EXISTS (SELECT 1 FROM waitlist_check(NULL, interval '0'))},
		't',
		"$what: the workers drain");
	sql('ANALYZE');

	my $found = sql(
		q{SELECT invariant || ' ' || coalesce(resource_id, '') || ' ' || coalesce(entity, '')
  || ' ' || coalesce(entity_id::text, '') || ': ' || detail FROM waitlist_check() ORDER BY 1});
	is($found, '', "$what: waitlist_check() returns no rows")
	  or diag "waitlist_check():\n$found";

	# every committed event was folded exactly once
	is( sql(
			q{SELECT count(*) FILTER (WHERE state <> 'PROCESSED') FROM waitlist.capacity_event}),
		'0',
		"$what: every committed capacity event is PROCESSED");
	is( sql(
			q{SELECT count(*) FROM waitlist.resource r
  WHERE r.units_released <> (SELECT coalesce(sum(quantity), 0) FROM waitlist.capacity_event e
                             WHERE e.resource_id = r.resource_id)
     OR r.units_released <> r.free_units + (SELECT coalesce(sum(o.units), 0) FROM waitlist.offer o
                             WHERE o.resource_id = r.resource_id
                               AND o.state IN ('OPEN', 'ACCEPTED', 'FAILED'))}),
		'0',
		"$what: per resource, units released = sum of the events = free + open + accepted + failed");

	# the booking function's seats and the offers committed together
	is( sql(
			q{SELECT (SELECT count(*) FROM stress_seat WHERE seat_no > 0)
     = (SELECT count(*) FROM waitlist.offer o JOIN stress_seat s
          ON s.resource_id = o.resource_id AND s.offer_id = o.offer_id
         AND o.reservation_ref = 'seat-' || s.seat_no
        WHERE o.state = 'ACCEPTED')
   AND (SELECT count(*) FROM stress_seat WHERE seat_no > 0)
     = (SELECT count(*) FROM waitlist.offer WHERE state = 'ACCEPTED' AND reservation_ref IS NOT NULL)}),
		't',
		"$what: every booked seat is one ACCEPTED offer's, and the other way round");
}

wait_until($workers_running, '2', 'two workers run');
sql(slurp_file("$stress_dir/setup.sql"));
sql(q{SELECT count(waitlist_join('hot-' || h, 'u' || u, (u % 8 = 0)::integer))
  FROM generate_series(1, 3) h, generate_series(1, 300) u});
sql(q{SELECT count(waitlist_join('cold-' || c, 'u' || u))
  FROM generate_series(1, 200) c, generate_series(1, 5) u});

# --- immediate shutdown in the middle of the load ---------------------------

my ($load, $out, $err) = start_load(60);
wait_for_load(0, 'the load is under way: events committed, some processed');
my $events = sql('SELECT count(*) FROM waitlist.capacity_event');
$node->stop('immediate');
finish_load($load, $err);
$node->start;

check_recovered('after an immediate shutdown');
my $after = sql('SELECT count(*) FROM waitlist.capacity_event');
cmp_ok($after, '>=', $events, "the $events events seen committed before the shutdown survived it");
note "$after events were committed before the immediate shutdown";

# --- SIGKILL of one client backend --------------------------------------------

($load, $out, $err) = start_load(60);
wait_for_load($after, 'the load is under way again');

my $victim;
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'stress'"
		  . " AND state = 'active' AND query LIKE '%stress_%'"),
	'a client is in the middle of a call')
  or diag sql("SELECT application_name, state, wait_event_type, wait_event, query FROM pg_stat_activity");
$victim = sql(
	"SELECT pid FROM pg_stat_activity WHERE application_name = 'stress' AND state = 'active'"
	  . " AND query LIKE '%stress_%' ORDER BY random() LIMIT 1")
  || sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'stress' LIMIT 1");
my $log_offset = -s $node->logfile;
ok(kill('KILL', $victim), "SIGKILL the client backend $victim");
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
finish_load($load, $err);
ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'the server is back after the crash');

check_recovered('after the SIGKILL of a backend');

# --- the worker killed again and again during a bulk release ----------------

# 600 waiting, 500 units released one by one.  Each offer takes a few
# milliseconds to make, so that the worker is certainly in the middle of
# promoting when it is killed.
sql(q{SELECT waitlist_create_resource('bulk', interval '1 hour');
SELECT count(waitlist_join('bulk', 'b' || g)) FROM generate_series(1, 600) g;
CREATE FUNCTION slow_offer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(0.004);
  RETURN NULL;
END $$;
CREATE TRIGGER slow_offer AFTER INSERT ON waitlist.offer
  FOR EACH ROW WHEN (NEW.resource_id = 'bulk') EXECUTE FUNCTION slow_offer();});
my $owner = sql("SELECT waitlist.resource_worker('bulk', 2)");

# the booking system delivers the 500 releases, paced
my $releaser = $node->background_psql('postgres', on_error_stop => 0);
$releaser->query_until(
	qr/releasing/, q{\echo releasing
DO $$
BEGIN
  FOR i IN 1 .. 500 LOOP
    PERFORM waitlist_release('bulk', 1, 'bulk-' || i);
    COMMIT;
    PERFORM pg_sleep(0.005);
  END LOOP;
END
$$;
});

# Kill the owner worker in the middle of a promotion, again and again: the
# first time while the releases come in, then while it promotes the rest.
my $kills = 4;
foreach my $kill (1 .. $kills)
{
	my $pid;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 1 FROM waitlist_worker_status() w JOIN pg_stat_activity a USING (pid)"
			  . " WHERE w.worker = $owner AND a.state = 'active'"
			  . " AND a.query = 'waitlist: promoting released capacity'"),
		"kill $kill: the owner worker is promoting 'bulk'");
	$pid = sql("SELECT pid FROM waitlist_worker_status() WHERE worker = $owner");
	my $offers = sql("SELECT count(*) FROM waitlist.offer WHERE resource_id = 'bulk'");
	$log_offset = -s $node->logfile;
	ok(kill('KILL', $pid), "kill $kill: SIGKILL the worker $pid ($offers offers made so far)");
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
	wait_until(
		"SELECT count(*) FROM waitlist_worker_status() WHERE pid IS NOT NULL AND pid <> $pid",
		'2', "kill $kill: the workers come back");
	next if $kill > 1;

	# The crash took the booking system's session too: it delivers every
	# event again, at least once; the ones already recorded are refused.
	# (This waits for the restarted worker's promotion of the pending
	# events, whose rows it holds.)
	eval { $releaser->quit; };
	my $new = sql(
		q{SELECT count(*) FILTER (WHERE waitlist_release('bulk', 1, 'bulk-' || g))
  FROM generate_series(1, 500) g});
	note "after kill $kill, $new of the 500 events were delivered anew";
}

wait_until(
	q{SELECT count(*) FROM waitlist.capacity_event WHERE resource_id = 'bulk' AND state = 'PROCESSED'},
	'500', 'all 500 events of the bulk release are processed');
wait_until(q{SELECT count(*) FROM waitlist.offer WHERE resource_id = 'bulk'},
	'500', 'and 500 offers made');
is( sql(
		q{SELECT count(*) FILTER (WHERE waitlist_release('bulk', 1, 'bulk-' || g))
  FROM generate_series(1, 500) g}),
	'0',
	'delivering all 500 events once more changes nothing');
is( sql(
		q{SELECT units_released || '|' || free_units FROM waitlist.resource WHERE resource_id = 'bulk'}),
	'500|0',
	'500 units released, none left free');
is( sql(
		q{SELECT count(*) || '|' || count(*) FILTER (WHERE state = 'OPEN') || '|' || count(DISTINCT entry_id)
  FROM waitlist.offer WHERE resource_id = 'bulk'}),
	'500|500|500',
	'every unit is in exactly one OPEN offer, to 500 distinct entries');
is( sql(
		q{SELECT count(*) FROM waitlist.entry e
  WHERE e.resource_id = 'bulk' AND (e.state = 'OFFERED') <> (e.user_id::text IN
        (SELECT 'b' || g FROM generate_series(1, 500) g))}),
	'0',
	'the offers went to the first 500 in line, the last 100 still wait');
my $found = sql(
	q{SELECT invariant || ' ' || coalesce(entity_id::text, '') || ': ' || detail
  FROM waitlist_check('bulk') ORDER BY 1});
is($found, '', "waitlist_check('bulk') returns no rows") or diag $found;
is( sql(
		q{SELECT count(*) FROM waitlist.outbox WHERE resource_id = 'bulk' AND event_type = 'offer_created'}),
	'500',
	'500 offer_created outbox rows, none left over from the killed attempts');

$node->stop;
done_testing();
