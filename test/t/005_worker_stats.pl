# The workers report their statistics as they go, as any backend does, so
# that pg_stat_user_tables (and autovacuum, which reads the same counters)
# sees the churn of worker mode while the workers run, not when they exit.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = worker_node(
	'worker_stats', qq{
waitlist.naptime = '60s'
});

my $inserted =
  "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'waitlist.offer'::regclass";
is(sql($inserted), '0', 'no offer inserted yet');

my $n = 20;
sql("SELECT waitlist_create_resource('r', '1 hour')");
sql("SELECT waitlist_join('r', 'u' || i) FROM generate_series(1, $n) i");
sql("SELECT waitlist_release('r', $n, 'ev-1')");
wait_until(
	"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'r'",
	$n, "the worker made $n offers");

# This session made no offer itself: the counts are the worker's, reported
# while it runs on (its next round is a nap away).
wait_until("SELECT ($inserted) >= $n", 't',
	'n_tup_ins of waitlist.offer counts the offers the running worker inserted');
wait_until(
	"SELECT n_tup_upd >= 1 FROM pg_stat_user_tables WHERE relid = 'waitlist.capacity_event'::regclass",
	't', 'and its update of the capacity event');
my $pid = sql("SELECT pid FROM waitlist_worker_status()");
is( sql("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid"),
	'1', 'the worker has not exited meanwhile');

$node->stop;
done_testing();
