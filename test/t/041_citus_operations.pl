# What else an application and a DBA use, on Citus, through the coordinator:
# a fan's inbox across nodes, a fan's history and explanation, the sweep
# (called, and scheduled by pg_cron on the coordinator), a capacity event
# retried, the capacity trigger on a booking table (local to the
# coordinator, distributed, and co-located with the waitlist), archiving,
# and the relay delivering every node's outbox rows; then waitlist_check()
# finds nothing, and no resource has rows on two nodes.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql wait_until slurp wait_for);
use CitusTest;
use RelayTest;

require_citus();

$ENV{WAITLIST_RELAY_SECRET} = 'citus-relay-secret';

my ($coordinator, $worker1, $worker2) = citus_cluster();
use_node($coordinator);
sql('SELECT waitlist_distribute(8)');

# pg_cron lives on the coordinator only
sql("SET citus.enable_ddl_propagation TO off; CREATE EXTENSION pg_cron");
my $sweep_job = sql("SELECT waitlist_schedule_sweep('* * * * *')");
ok($sweep_job > 0, 'the sweep is scheduled with pg_cron on the coordinator');

# resources on both workers: show-1 .. show-8
my @resources = map { "show-$_" } 1 .. 8;
my %on_node = map { $_ => shard_node_of($coordinator, $_) } @resources;
my %ports = map { $_ => 1 } values %on_node;
is(scalar(keys %ports), 2, 'the resources lie on both workers');

sql(join('', map { "SELECT waitlist_create_resource('$_', offer_ttl => '1 hour');\n" } @resources));
# every fan in every line: fan-1 first everywhere
$coordinator->safe_psql('postgres',
	join('', map { my $r = $_; map { "SELECT waitlist_join('$r', 'fan-$_');\n" } 1 .. 4 } @resources));
sql(join('', map { "SELECT waitlist_release('$_', 1, 'first-$_');\n" } @resources));
wait_until("SELECT count(*) FROM waitlist.offer WHERE state = 'OPEN'", '8', 'one offer in each line');

# --- a fan's inbox, across the nodes -------------------------------------------

my $inbox = sql("SELECT string_agg(kind || ' ' || resource_id, ',' ORDER BY ord)"
	  . " FROM waitlist_inbox('fan-1', '1 day') WITH ORDINALITY AS i(resource_id, entry_id, offer_id,"
	  . " kind, state, expires_at, seen_at, at, payload, ord)");
my @inbox = split /,/, $inbox;
is(scalar(grep { /^open_offer / } @inbox), 8, 'the inbox shows the open offer of every line, on both nodes');
is(scalar(grep { /^offer_created / } @inbox), 8, '... and the event of each');
is(join(',', map { /^open_offer/ ? 0 : 1 } @inbox), join(',', (0) x 8, (1) x 8), '... open offers first');
is( sql("SELECT bool_and(expires_at >= prev) FROM (SELECT expires_at, lag(expires_at, 1, '-infinity')"
		  . " OVER (ORDER BY ord) AS prev FROM waitlist_inbox('fan-1', '1 day') WITH ORDINALITY"
		  . " AS i(resource_id, entry_id, offer_id, kind, state, expires_at, seen_at, at, payload, ord)"
		  . " WHERE kind = 'open_offer') x"),
	't', '... soonest deadline first, across the nodes');
is(sql("SELECT count(*) FROM waitlist_inbox('fan-2', '1 day')"), '0', 'a waiting fan has an empty inbox');

# --- a fan's history and explanation -------------------------------------------

my $offered = sql("SELECT entry_id FROM waitlist.entry WHERE resource_id = 'show-1' AND user_id = 'fan-1'");
is( sql("SELECT string_agg(entity || ':' || to_state || ':' || coalesce(position::text, '-'), ','"
		  . " ORDER BY at, entity) FROM waitlist_history($offered)"),
	'entry:WAITING:-,entry:OFFERED:1,offer:OPEN:1', 'the history of an offered fan, with their place');
like(sql("SELECT string_agg(line, ' ') FROM waitlist_explain($offered) AS e(line)"),
	qr/You have an open offer now/, 'and the explanation');

# --- the metrics of the whole cluster ---------------------------------------------

my ($metrics_rc, $metrics, $metrics_err) = $coordinator->psql('postgres', 'SELECT waitlist_metrics()');
is($metrics_err, '', 'waitlist_metrics() answers on the coordinator without a warning');
like($metrics, qr/^waitlist_resources 8$/m, '... counting the resources of every node');
is(scalar(() = $metrics =~ /^waitlist_offers_open\{resource="show-\d"\} 1$/mg),
	8, '... with the open offer of each');
for my $worker ($worker1, $worker2)
{
	my $port = $worker->port;
	like($metrics, qr/^waitlist_worker_up\{node="[^"]+:$port",worker="0"\} 1$/m,
		"... and the promotion worker of the node on port $port");
}

# --- the sweep, through the coordinator -------------------------------------------

# due offers on both nodes, held by this transaction until the sweep runs;
# on one connection per node, so that the sweep on each node sees them
is( $coordinator->safe_psql(
		'postgres', qq{BEGIN;
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
UPDATE waitlist.offer SET expires_at = now() - interval '1 second' WHERE resource_id IN ('show-1', 'show-2', 'show-3', 'show-4', 'show-5', 'show-6');
SELECT waitlist_sweep();
COMMIT;}),
	'6', 'a sweep through the coordinator expires the due offers of every node');
is(sql("SELECT count(*) FROM waitlist.offer WHERE state = 'EXPIRED'"), '6', '... all of them');
wait_until("SELECT count(*) FROM waitlist.offer WHERE state = 'OPEN'", '8',
	'their units pass to the next fans');

# --- a capacity event retried -------------------------------------------------------

# the same event id in two resources, one on each node, dead
my ($one, $two) = (
	(grep { $on_node{$_} == $worker1->port } @resources)[0],
	(grep { $on_node{$_} == $worker2->port } @resources)[0]);
# events that died before (the way waitlist_retry_event()'s callers find them)
sql("INSERT INTO waitlist.capacity_event (resource_id, event_id, quantity, state, attempts, last_error)"
	  . " VALUES ('$one', 'storm', 1, 'DEAD', 15, 'failed earlier'), ('$two', 'storm', 1, 'DEAD', 15, 'failed earlier')");
is(sql("SELECT waitlist_retry_event('storm', '$one')"), '1', 'a dead event retried with its resource');
is(sql("SELECT waitlist_retry_event('storm')"), '1', 'the other, without its resource: one is dead still');
wait_until("SELECT count(*) FROM waitlist.capacity_event WHERE event_id = 'storm' AND state = 'PROCESSED'",
	'2', '... and the nodes take both up again');
my ($rc, $out, $err) = $coordinator->psql('postgres', "SELECT waitlist_retry_event('no-such-event')");
like($err, qr/capacity event "no-such-event" does not exist/, 'an unknown event is an error on a cluster too');

# --- the capacity trigger on booking tables ------------------------------------------

my $long = 'seats_of_the_concert_hall_with_a_name_longer_than_most_tables';
sql(qq{CREATE SCHEMA box;
CREATE TABLE box.local_seats (seat integer PRIMARY KEY, concert text, seats integer,
    status text NOT NULL DEFAULT 'active');
CREATE TABLE box.seats (seat integer, concert text, seats integer,
    status text NOT NULL DEFAULT 'active', PRIMARY KEY (concert, seat));
SELECT create_distributed_table('box.seats', 'concert');
-- a name too long for Citus to append the shard id: its shards' names are cut short
CREATE TABLE box.$long (seat integer, concert text, seats integer,
    status text NOT NULL DEFAULT 'active', PRIMARY KEY (concert, seat));
SELECT create_distributed_table('box.$long', 'concert');
CREATE TABLE box.colocated_seats (seat integer, resource_id text, seats integer,
    status text NOT NULL DEFAULT 'active', PRIMARY KEY (resource_id, seat));
SELECT create_distributed_table('box.colocated_seats', 'resource_id', colocate_with => 'waitlist.resource');});
# Citus asks for this before it fires a trigger on a distributed table's shards
$coordinator->safe_psql('postgres', 'ALTER SYSTEM SET citus.enable_unsafe_triggers = on');
$_->reload for ($coordinator, $worker1, $worker2);
for my $table ('local_seats', 'seats', $long, 'colocated_seats')
{
	my $column = $table eq 'colocated_seats' ? 'resource_id' : 'concert';
	sql(qq{CREATE TRIGGER waitlist AFTER UPDATE OR DELETE ON box.$table FOR EACH ROW
EXECUTE FUNCTION waitlist_capacity_trigger('$column', 'seats', 'status', 'cancelled');
INSERT INTO box.$table VALUES (1, '$one', 1), (2, '$two', 1), (3, 'not-waitlisted', 1);});
}
my $before = sql("SELECT sum(units_released) FROM waitlist.resource");
sql("UPDATE box.$_ SET status = 'cancelled'") for ('local_seats', 'seats', $long, 'colocated_seats');
wait_until("SELECT sum(units_released) - $before FROM waitlist.resource", '8',
	'a cancelled seat of each table, in a line on each node, is released');
is( sql("SELECT string_agg(event_id, ',' ORDER BY event_id) FROM waitlist.capacity_event"
		  . " WHERE event_id LIKE 'box.%'"),
	join(',', sort("box.colocated_seats:$one,1", "box.colocated_seats:$two,2", "box.local_seats:1",
		"box.local_seats:2", "box.seats:$one,1", "box.seats:$two,2", "box.$long:$one,1", "box.$long:$two,2")),
	"... each named by its table's name, not its shard's");
sql("DELETE FROM box.$_") for ('local_seats', 'seats', $long, 'colocated_seats');
is(sql("SELECT sum(units_released) FROM waitlist.resource") - $before, 8,
	'deleting the cancelled seats releases nothing again');

# --- a shard split with both halves on its node ------------------------------------------

# ids name their resource's shard; after a split, half of them name the
# other half, which on the same node still leads the call there
my $split = sql("SELECT get_shard_id_for_distribution_column('waitlist.resource', '$one')");
sql(qq{SELECT citus_split_shard_by_split_points($split,
    ARRAY[((s.shardminvalue::bigint + s.shardmaxvalue::bigint) / 2)::text],
    ARRAY[n.nodeid, n.nodeid], 'block_writes')
FROM pg_dist_shard s, pg_dist_placement p, pg_dist_node n
WHERE s.shardid = $split AND p.shardid = s.shardid AND n.groupid = p.groupid});
is(sql("SELECT count(*) FROM pg_dist_shard WHERE shardid = $split"), '0', 'a shard is split in two');
ok( sql("SELECT count(*) FROM waitlist.entry WHERE get_shard_id_for_distribution_column('waitlist.resource', entry_id::text)"
		  . " <> get_shard_id_for_distribution_column('waitlist.resource', resource_id)") > 0,
	'... and some ids now name the other half');
is( sql(join('', map { "SELECT state FROM waitlist_status($_);\n" }
		  split /\n/, sql("SELECT entry_id FROM waitlist.entry WHERE resource_id = '$one'"))) =~ tr/\n// + 1,
	sql("SELECT count(*) FROM waitlist.entry WHERE resource_id = '$one'"),
	'every entry of the split line answers a status by id, each its own statement');
my $after_split = sql("SELECT waitlist_join('$one', 'after-the-split')");
is( sql("SELECT get_shard_id_for_distribution_column('waitlist.resource', '$after_split')"
		  . " = get_shard_id_for_distribution_column('waitlist.resource', '$one')"),
	't', 'a fan who joins after the split gets an id of the new shard');
# (the line has a unit the trigger released, so the fan may have it already)
like(sql("SELECT state FROM waitlist_status($after_split)"), qr/^(WAITING|OFFERED)$/, '... and is in line');

# --- the relay delivers every node's rows ----------------------------------------------

my $control = start_receiver($coordinator);
is(relay_once('/ok'), 0, 'the relay, connected to the coordinator, delivers what is due');
is(sql("SELECT count(*) FROM waitlist.outbox WHERE state <> 'DELIVERED' AND channel <> 'booking'"),
	'0', '... every row of every node');
my @keys = map { $_->{key} } requests();
my %once;
$once{$_}++ for @keys;
is(scalar(grep { $once{$_} > 1 } keys %once), 0, '... each once');
is( scalar(@keys),
	sql("SELECT count(*) FROM waitlist.outbox WHERE channel <> 'booking'"),
	'... and nothing else');

# --- archiving, through the coordinator ---------------------------------------------------

# the lines end: who waits leaves, who has an offer declines it
sql("SELECT count(waitlist_leave(entry_id)) FROM waitlist.entry WHERE state = 'WAITING'");
sql("SELECT count(waitlist_decline(offer_id)) FROM waitlist.offer WHERE state = 'OPEN'");
is(relay_once('/ok'), 0, 'the relay delivers the last events');
stop_receiver();
sql("UPDATE waitlist.entry SET updated_at = '2020-01-01'");
sql("UPDATE waitlist.capacity_event SET processed_at = '2020-01-01' WHERE processed_at IS NOT NULL");
my $entries = sql("SELECT count(*) FROM waitlist.entry");
my $events = sql("SELECT count(*) FROM waitlist.capacity_event");
my $moved = 0;
my $batches = 0;
while ((my $n = sql("SELECT waitlist_archive('30 days', 10)")) > 0)
{
	$moved += $n;
	last if ++$batches > 100;
}
ok($batches > 1, 'the archive moves a batch per node and call');
is($moved, $entries + $events, 'waitlist_archive() through the coordinator moves every ended line');
is(sql("SELECT count(*) FROM waitlist.entry"), '0', '... leaving no hot entry');
is(sql("SELECT count(*) FROM waitlist_archive.entry"), $entries, '... and archiving every one');
is( sql("SELECT count(*) FROM waitlist_history($offered)"),
	sql("SELECT count(*) FROM waitlist_archive.transition WHERE resource_id = 'show-1'"
		  . " AND ((entity = 'entry' AND entity_id = $offered) OR (entity = 'offer' AND entity_id IN"
		  . " (SELECT offer_id FROM waitlist_archive.offer WHERE entry_id = $offered)))"),
	'an archived fan still has their history');

# --- every row is in its resource's shard ---------------------------------------------------

# archiving moved each shard's rows into the archive shard co-located with it
for my $table ('waitlist_archive.entry', 'waitlist_archive.offer', 'waitlist_archive.transition',
	'waitlist_archive.capacity_event', 'waitlist.resource')
{
	is( sql(
			qq{SELECT count(*) FROM run_command_on_shards('$table', \$\$SELECT count(*) FROM %1\$s
WHERE get_shard_id_for_distribution_column('$table', resource_id)::text
  <> regexp_replace('%1\$s', '^.*_', '')\$\$) WHERE NOT success OR result <> '0'}),
		'0', "every row of $table is in its resource's shard");
}
ok(sql("SELECT count(*) FROM waitlist_archive.transition") > 0, '... and the archive has rows');

# --- nothing broken anywhere, and the scheduled sweep ran ---------------------------------

is(sql("SELECT count(*) FROM waitlist_check()"), '0', 'waitlist_check() finds nothing on any node')
  or diag(sql("SELECT * FROM waitlist_check()"));
ok( wait_for(
		sub {
			sql("SELECT count(*) FROM cron.job_run_details WHERE jobid = $sweep_job AND status = 'succeeded'")
			  > 0;
		},
		120),
	'the sweep pg_cron runs on the coordinator succeeds');
is(sql("SELECT count(*) FROM cron.job_run_details WHERE jobid = $sweep_job AND status <> 'succeeded'"),
	'0', '... every time');
is(sql('SELECT waitlist_unschedule_sweep()'), 't', 'and is unscheduled');

done_testing();
