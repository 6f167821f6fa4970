# Without waitlist in shared_preload_libraries there are no workers:
# waitlist_worker_status() says so, and the rest of the API promotes inline
# even with waitlist.promotion_mode = 'worker', so that nothing waits for a
# worker that does not exist.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql);

my $node = PostgreSQL::Test::Cluster->new('no_preload');
use_node($node);
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
});
$node->start;

sub entry_state
{
	my ($entry_id) = @_;
	return sql("SELECT state FROM waitlist_status($entry_id)");
}

sql('CREATE EXTENSION waitlist');

is( sql(
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'"),
	'0',
	'no waitlist worker runs');

my ($ret, $stdout, $stderr) = $node->psql(
	'postgres',
	'SELECT * FROM waitlist_worker_status()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'waitlist_worker_status() fails without preload');
like($stderr, qr/ERROR:\s+55000:/, 'with SQLSTATE 55000');
like(
	$stderr,
	qr/waitlist must be loaded via shared_preload_libraries/,
	'saying the library must be preloaded');
like($stderr, qr/HINT:\s+Add waitlist to shared_preload_libraries/,
	'with a hint on how to fix it');

# The same, as the application sees it.
is( sql(
		q{DO $$
BEGIN
  PERFORM * FROM waitlist_worker_status();
  RAISE EXCEPTION 'no error';
EXCEPTION WHEN object_not_in_prerequisite_state THEN
  NULL;
END
$$;
SELECT 'caught'}),
	'caught',
	'the error is object_not_in_prerequisite_state');

is(sql('SHOW waitlist.promotion_mode'),
	'worker', 'promotion_mode is worker');

# --- release promotes inline ----------------------------------------------

sql("SELECT waitlist_create_resource('r', '1 hour')");
my $e1 = sql("SELECT waitlist_join('r', 'u1')");
my $e2 = sql("SELECT waitlist_join('r', 'u2')");
my $e3 = sql("SELECT waitlist_join('r', 'u3')");

# everything below is checked in the releasing transaction itself
is( sql(
		qq{BEGIN;
SELECT waitlist_release('r', 1, 'ev-1');
SELECT state FROM waitlist.capacity_event WHERE resource_id = 'r' AND event_id = 'ev-1';
SELECT state FROM waitlist_status($e1);
COMMIT;}),
	"t\nPROCESSED\nOFFERED",
	'the release is processed and promoted inline, in the caller\'s transaction');
is(entry_state($e2), 'WAITING', 'one unit, one offer');
is(sql("SELECT waitlist_release('r', 1, 'ev-1')"),
	'f', 'a repeated event is refused');

# --- waitlist_promote() promotes inline -----------------------------------

is(sql("SELECT waitlist_promote('r')"), '0', 'nothing free, nothing to promote');
# units left behind, as a promotion cut short would leave them
sql("UPDATE waitlist.resource SET free_units = 1 WHERE resource_id = 'r'");
is(sql("SELECT waitlist_promote('r')"), '1', 'waitlist_promote() makes the offer');
is(entry_state($e2), 'OFFERED', 'to the next in line');

# --- decline gives the unit to the next waiter inline ---------------------

is(sql("SELECT waitlist_decline(offer_id) FROM waitlist_status($e1)"),
	't', 'the first waiter declines');
is(entry_state($e3), 'OFFERED', 'the unit goes to the next waiter at once');

# --- a join while a unit is free is promoted inline -----------------------

is(sql("SELECT waitlist_release('r', 1, 'ev-2')"), 't', 'a unit with nobody waiting');
is( sql("SELECT free_units FROM waitlist.resource WHERE resource_id = 'r'"),
	'1', 'stays free');
my $e4 = sql("SELECT waitlist_join('r', 'u4')");
is(entry_state($e4), 'OFFERED', 'a newcomer gets the free unit at once');

# --- a dead event is revived and processed inline -------------------------

sql("SELECT waitlist_create_resource('r-dead', '1 hour')");
my $d1 = sql("SELECT waitlist_join('r-dead', 'd1')");
sql(
	"INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity, state, attempts, last_error)"
	  . " VALUES ('r-dead', 'ev-dead', 1, 'DEAD', 3, 'failed before')");
is(sql("SELECT waitlist_retry_event('ev-dead')"), '1', 'the dead event is revived');
is( sql(
		"SELECT state FROM waitlist.capacity_event WHERE resource_id = 'r-dead' AND event_id = 'ev-dead'"
	),
	'PROCESSED',
	'and processed by the caller, there being no worker');
is(entry_state($d1), 'OFFERED', 'its unit is offered');

is( sql(
		"SELECT count(*) FROM waitlist.capacity_event WHERE state <> 'PROCESSED'"),
	'0',
	'no event is left pending for a worker that does not exist');

$node->stop;
done_testing();
