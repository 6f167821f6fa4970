# A resource whose row another transaction holds locked (a release left
# open, a DBA's SELECT ... FOR UPDATE) while capacity events of it wait for
# the worker: the worker passes over the resource without taking its gate,
# so the resource's joins go on, and it folds the events once the row is
# free.  Before 1.1's engine, the worker took the gate and then waited for
# the row, and every join of the resource waited behind it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = worker_node('busy_row', qq{
waitlist.naptime = '1s'
});

sql("SELECT waitlist_create_resource('busy', '1 hour')");
my $first = sql("SELECT waitlist_join('busy', 'first')");

# the row held by a transaction left open
my $holder = $node->background_psql('postgres');
$holder->query_safe(
	"BEGIN; SELECT 1 FROM waitlist.resource WHERE resource_id = 'busy' FOR NO KEY UPDATE;");

# a worker-mode release: its event waits for the worker, which is woken
sql("SELECT waitlist_release('busy', 1, 'ev-1')");
wait_until(
	"SELECT count(*) FROM waitlist.capacity_event WHERE event_id = 'ev-1' AND state = 'PENDING'",
	'1', 'the event is pending');
# let the worker take its turns at the resource
sleep(2);

# a join of the resource does not wait for the worker (the statement
# timeout is a bound for a hang, not a measure of speed)
my $joined = $node->safe_psql('postgres',
	"SET statement_timeout = '20s'; SELECT waitlist_join('busy', 'second') IS NOT NULL");
is($joined, 't', 'a join of the resource goes on while its row is held');
is(sql("SELECT state FROM waitlist.capacity_event WHERE event_id = 'ev-1'"),
	'PENDING', 'the worker left the event for later');
is( sql(
		q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE a.backend_type = 'waitlist worker' AND l.locktype = 'advisory' AND l.granted}),
	'0', 'the worker holds no gate while it waits');

$holder->query_safe('COMMIT');
$holder->quit;
wait_until(entry_state($first), 'OFFERED', 'once the row is free the unit is offered');
is(sql("SELECT state FROM waitlist.capacity_event WHERE event_id = 'ev-1'"),
	'PROCESSED', 'and the event is folded');
is(sql('SELECT count(*) FROM waitlist_check()'), '0', 'waitlist_check() is empty');

$node->stop;
done_testing();
