# Wake-ups carry their work: in worker mode a decline, a leave while
# offered, an expiry by the sweep and a join to a resource with free units
# each hand the resource to its worker at commit, which promotes it at once
# rather than at its next idle scan (with a nap of a minute here); so is
# the next wave of a resource with waves, when its interval is over.  A
# transaction that changes more resources than a wake-up queue holds makes
# the worker scan its whole share instead.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

# far below the nap: the worker must not be waiting for its idle scan
my $prompt = 20;

my $node = worker_node(
	'wakeups', qq{
waitlist.naptime = '60s'
});

# let the worker's first idle scan (at start-up) pass
sleep(1);

sql("SELECT waitlist_create_resource('r', '1 hour')");
my @e = map { sql("SELECT waitlist_join('r', 'u$_')") } 1 .. 4;

sql("SELECT waitlist_release('r', 1, 'ev-1')");
wait_within(entry_state($e[0]), 'OFFERED', $prompt,
	'a release is promoted at once');

# --- decline ------------------------------------------------------------

my $offer = sql("SELECT offer_id FROM waitlist_status($e[0])");
is(sql("SELECT waitlist_decline($offer)"), 't', 'the first fan declines');
wait_within(entry_state($e[1]), 'OFFERED', $prompt,
	'the declined unit is offered to the next fan within seconds');

# --- leave while offered ------------------------------------------------

is(sql("SELECT waitlist_leave($e[1])"), 't', 'the offered fan leaves');
wait_within(entry_state($e[2]), 'OFFERED', $prompt,
	'the unit of a fan who left while offered goes on within seconds');

# --- expiry by the sweep ----------------------------------------------------

sql("UPDATE waitlist.offer SET expires_at = now() - interval '1 second'"
	  . " WHERE entry_id = $e[2] AND state = 'OPEN'");
is(sql("SELECT waitlist_sweep(100)"), '1', 'the sweep expires the offer');
wait_within(entry_state($e[3]), 'OFFERED', $prompt,
	'the expired unit is offered to the next fan within seconds');

# --- join to a resource with free units --------------------------------------

sql("SELECT waitlist_create_resource('free', '1 hour')");
sql("SELECT waitlist_release('free', 1, 'ev-free')");
wait_within(
	"SELECT free_units FROM waitlist.resource WHERE resource_id = 'free'",
	'1', $prompt, 'the released unit is free: nobody waits');
my $late = sql("SELECT waitlist_join('free', 'late')");
wait_within(entry_state($late), 'OFFERED', $prompt,
	'a join to a resource with a free unit is offered it within seconds');

# --- a wake-up that finds the gate still held ---------------------------------
# A commit wakes the worker before its transaction has let go of its locks,
# and another open join may hold the gate besides: the worker cannot promote
# then and backs the resource off.  It must come back for it by itself, not
# wait for its idle scan a nap later: nothing else (no event, no deadline)
# would bring the resource up again.

sql("SELECT waitlist_create_resource('held-free', '1 hour')");
sql("SELECT waitlist_release('held-free', 1, 'ev-held-free')");
wait_within(
	"SELECT free_units FROM waitlist.resource WHERE resource_id = 'held-free'",
	'1', $prompt, 'the unit of held-free is free: nobody waits');
my $holder = $node->background_psql('postgres');
$holder->query_safe("BEGIN; SELECT waitlist_join('held-free', 'holder');");
my $early = sql("SELECT waitlist_join('held-free', 'early')");
sleep(2);
is(sql(entry_state($early)), 'WAITING',
	'while another join holds the gate, the woken worker cannot offer the unit');
$holder->query_safe('ROLLBACK');
$holder->quit;
wait_within(entry_state($early), 'OFFERED', $prompt,
	'once the gate is free the backed-off resource is retried, not left to the idle scan');

# --- more resources in one transaction than a queue holds ---------------------

my $n = 100;
sql(
	qq{SELECT waitlist_create_resource('many-' || i, '1 hour') FROM generate_series(1, $n) i;
SELECT waitlist_release('many-' || i, 1, 'ev') FROM generate_series(1, $n) i;});
wait_within(
	"SELECT sum(free_units) FROM waitlist.resource WHERE resource_id LIKE 'many-%'",
	$n, $prompt, 'the units are folded in: nobody waits');
sql(
	"SELECT waitlist_join('many-' || i, 'fan-' || i) FROM generate_series(1, $n) i"
);
wait_within(
	"SELECT count(*) FROM waitlist.offer WHERE resource_id LIKE 'many-%' AND state = 'OPEN'",
	$n, $prompt,
	"one transaction joining $n resources with free units: all offered within seconds");

# --- the next wave of a resource with waves ----------------------------------

sql("SELECT waitlist_create_resource('waves', '1 hour', wave_size => 1, wave_interval => '2 seconds')");
my @w = map { sql("SELECT waitlist_join('waves', 'w$_')") } 1 .. 3;
sql("SELECT waitlist_release('waves', 3, 'ev-waves')");
wait_within(entry_state($w[0]), 'OFFERED', $prompt, 'the first wave is offered at once');
is(sql(entry_state($w[1])), 'WAITING', 'one offer per wave');
wait_within(entry_state($w[1]), 'OFFERED', 2 + $prompt,
	'the next wave is offered when its interval has passed, not at the next nap');

is(sql("SELECT count(*) FROM waitlist_check()"), '0', 'waitlist_check() is clean');

$node->stop;
done_testing();
