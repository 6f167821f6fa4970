# A resource whose gate is held (here by a join left idle in its
# transaction, then by a prepared one) while its offer is past its deadline:
# the offer expires anyway (expiry waits for no joiner), but the unit it
# frees cannot be offered while the join is in flight.  The worker backs off
# from that resource instead of retrying it in a tight loop, goes on serving
# the other resources promptly meanwhile, and offers the unit soon after the
# gate is free again.  Nor does a spent wave with nobody waiting keep the
# worker busy.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = worker_node(
	'busy_backoff', qq{
waitlist.naptime = '60s'
max_prepared_transactions = 5
});
my $pid = sql("SELECT pid FROM waitlist_worker_status()");

my $rounds = "SELECT rounds FROM waitlist_worker_status()";

# CPU time (user + system) of the worker so far, in seconds
sub worker_cpu
{
	my @f = split ' ', slurp_file("/proc/$pid/stat");
	return ($f[13] + $f[14]) / 100.0;
}

# Hold a resource's gate with an offer of it past its deadline; measure the
# worker's CPU over $hold seconds while another resource is served.
my $hold = 4;
my $case = 0;

sub held_gate
{
	my ($what, $hold_sql, $end_sql) = @_;
	$case++;
	my $r = "held-$case";
	my $o = "other-$case";

	sql("SELECT waitlist_create_resource('$r', '2 seconds')");
	sql("SELECT waitlist_create_resource('$o', '1 hour')");
	my $first = sql("SELECT waitlist_join('$r', 'first')");
	sql("SELECT waitlist_release('$r', 1, 'ev-1')");
	wait_until(entry_state($first), 'OFFERED', "$what: the offer is made");

	# a fan joins and does not commit: the gate is held (shared) meanwhile
	my $holder = $node->background_psql('postgres');
	$holder->query_safe("BEGIN; SELECT waitlist_join('$r', 'holder');");
	$holder->query_safe($hold_sql) if $hold_sql;

	wait_until(
		"SELECT count(*) FROM waitlist.offer WHERE resource_id = '$r'"
		  . " AND expires_at < now() - interval '200 milliseconds'",
		'1', "$what: the offer is past its deadline");
	my $cpu0 = worker_cpu();
	my $rounds0 = sql($rounds);
	my $t0 = time();

	my $other = sql("SELECT waitlist_join('$o', 'other')");
	sql("SELECT waitlist_release('$o', 1, 'ev-other')");
	wait_within(entry_state($other), 'OFFERED', 5,
		"$what: another resource is served promptly meanwhile");
	sleep($hold - (time() - $t0)) if time() - $t0 < $hold;

	my $cpu = worker_cpu() - $cpu0;
	my $n = sql($rounds) - $rounds0;
	my $elapsed = time() - $t0;
	note("$what: the worker ran $n rounds and used ${cpu}s of CPU in ${elapsed}s");
	# retrying every 20 ms would be 50 rounds a second
	cmp_ok($n, '<', 5 * $elapsed,
		"$what: the worker retries the busy resource only now and then");
	cmp_ok($cpu, '<', 0.1 * $elapsed,
		"$what: the worker does not spin on the busy resource");
	is(sql(entry_state($first)), 'EXPIRED',
		"$what: the offer expires although a join in flight holds the gate");
	is(sql("SELECT free_units FROM waitlist.resource WHERE resource_id = '$r'"), '1',
		"$what: the unit it freed waits for the join in flight");

	$holder->query_safe($end_sql);
	$holder->quit;
	my $joined = sql("SELECT entry_id FROM waitlist.entry"
		  . " WHERE resource_id = '$r' AND user_id = 'holder'");
	wait_within(entry_state($joined), 'OFFERED', 2 * $elapsed + 5,
		"$what: the unit is offered to the joiner soon after the gate is free");
	return;
}

held_gate('idle in transaction', undef, 'COMMIT');
held_gate('prepared', "PREPARE TRANSACTION 'held'", "COMMIT PREPARED 'held'");

# The same while commits for another resource keep waking the worker: the
# busy resource's retries come due in the middle of rounds begun for those
# commits, and each is still made in a later round (forgetting one would
# leave the unit idle until the next nap, a minute here).
{
	sql("SELECT waitlist_create_resource('held-stream', '2 seconds')");
	sql("SELECT waitlist_create_resource('stream', '1 hour')");
	my $first = sql("SELECT waitlist_join('held-stream', 'first')");
	sql("SELECT waitlist_release('held-stream', 1, 'ev-1')");
	wait_until(entry_state($first), 'OFFERED', 'stream: the offer is made');

	my $holder = $node->background_psql('postgres');
	$holder->query_safe("BEGIN; SELECT waitlist_join('held-stream', 'holder');");

	my $stream = $node->background_psql('postgres');
	$stream->query_until(qr/streaming/, q{
\echo streaming
DO $$
DECLARE
	stop timestamptz := clock_timestamp() + interval '12 seconds';
	i int := 0;
BEGIN
	WHILE clock_timestamp() < stop LOOP
		i := i + 1;
		PERFORM waitlist_release('stream', 1, 'stream-' || i);
		COMMIT;
		PERFORM pg_sleep(0.003);
	END LOOP;
END
$$;
});
	wait_until(entry_state($first), 'EXPIRED',
		'stream: the offer expires while the join holds the gate');
	sleep(1);
	$holder->query_safe('COMMIT');
	$holder->quit;
	my $joined = sql("SELECT entry_id FROM waitlist.entry"
		  . " WHERE resource_id = 'held-stream' AND user_id = 'holder'");
	wait_within(entry_state($joined), 'OFFERED', 6,
		'stream: the unit is offered to the joiner soon after the gate is free');
	$stream->quit;
}

# A spent wave whose interval is over, with a free unit but nobody waiting:
# nothing to do, so nothing to retry.
sql("SELECT waitlist_create_resource('wave', '1 hour', wave_size => 1, wave_interval => '1 second')");
my $fan = sql("SELECT waitlist_join('wave', 'fan')");
sql("SELECT waitlist_release('wave', 2, 'ev-wave')");
wait_until(entry_state($fan), 'OFFERED', 'the wave offered its one unit');
sleep(2);
my $r0 = sql($rounds);
sleep(3);
my $n = sql($rounds) - $r0;
note("idle wave: the worker ran $n rounds in 3s");
cmp_ok($n, '<', 5, 'a spent wave with nobody waiting does not keep the worker busy');

is(sql("SELECT count(*) FROM waitlist_check()"), '0', 'waitlist_check() is clean');

$node->stop;
done_testing();
