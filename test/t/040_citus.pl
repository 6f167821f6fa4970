# The same API on Citus: one coordinator and two workers on this machine,
# the tables distributed by resource_id with waitlist_distribute(), and the
# concert scenario run through the coordinator: joins across 20 resources,
# cancellations on both workers at once, accepts and double taps, calls in
# transaction blocks and by token, expiry and promotion by each node's own
# worker, a worker node's promotion worker killed mid-storm, a shard moved
# mid-scenario; then no invariant broken anywhere, no resource with rows on
# two nodes, and every offer with its outbox row.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;
use CitusTest;

require_citus();

my ($coordinator, $worker1, $worker2) = citus_cluster(without_waitlist => 'worker2');
use_node($coordinator);

# --- waitlist_distribute() refuses what it cannot do ------------------------

my ($rc, $out, $err) = $coordinator->psql('postgres', 'SELECT waitlist_distribute()');
isnt($rc, 0, 'waitlist_distribute() refuses while a node lacks the extension');
like($err, qr/the waitlist extension 1\.1 is missing on some nodes/, '... saying why');
like($err, qr/:@{[$worker2->port]} \(not installed\)/, '... naming the node');
is(sql("SELECT count(*) FROM pg_dist_partition"), '0', '... and distributes nothing');

$worker2->safe_psql('postgres', 'SET citus.enable_ddl_propagation TO off; CREATE EXTENSION waitlist');
($rc, $out, $err) = $worker1->psql('postgres', 'SELECT waitlist_distribute()');
like($err, qr/must run on the coordinator/, 'waitlist_distribute() runs on the coordinator only');

($rc, $out, $err) = $coordinator->psql('postgres', 'SELECT waitlist_distribute(0)');
like($err, qr/shard_count must be between 1 and 4096/, 'a shard count out of bounds is refused');

sql('SELECT waitlist_distribute(8)');
sql('SELECT waitlist_distribute()');
is( sql(
		"SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h'"
		  . " AND colocationid = (SELECT colocationid FROM pg_dist_partition"
		  . "                      WHERE logicalrelid = 'waitlist.resource'::regclass)"),
	'17',
	'every per-resource table is distributed, co-located, once (a second call changes nothing)');
is(sql("SELECT partmethod FROM pg_dist_partition WHERE logicalrelid = 'waitlist.token_key'::regclass"),
	'n', 'the token keys are a reference table');
($rc, $out, $err) = $coordinator->psql('postgres', 'SELECT waitlist_distribute(4)');
like($err, qr/distributed already, in 8 shards/, 'another shard count is refused once distributed');

# --- the concert, through the coordinator ------------------------------------

my @resources = map { "show-$_" } 1 .. 20;
sql("SELECT waitlist_create_resource('$_', offer_ttl => '1 hour')") for @resources;
my %on_node = map { $_ => shard_node_of($coordinator, $_) } @resources;
my @nodes_used = sort { $a <=> $b } keys %{ { map { $_ => 1 } values %on_node } };
is_deeply(\@nodes_used, [ sort { $a <=> $b } ($worker1->port, $worker2->port) ],
	'the resources live on both workers');

# 10,000 joins, each its own statement, as an application makes them
my $fans = 10_000;
my $joins = join('', map { "SELECT waitlist_join('show-" . ($_ % 20 + 1) . "', 'fan-$_');\n" } 1 .. $fans);
$coordinator->safe_psql('postgres', $joins);
is(sql("SELECT count(*) FROM waitlist.entry WHERE state = 'WAITING'"), $fans, "$fans fans wait");
# an id drawn on a node is 2^52 + n * 1024 + the node's Citus group
sub drawn_elsewhere
{
	my ($table, $id) = @_;
	my %group = split /[|\n]/, sql(
		"SELECT r, (SELECT groupid FROM pg_dist_placement"
		  . "  WHERE shardid = get_shard_id_for_distribution_column('waitlist.resource', r))"
		  . " FROM unnest(ARRAY['" . join("', '", @resources, 'show-ttl') . "']) r");
	my $wrong = 0;
	for my $row (split /\n/,
		sql("SELECT resource_id, $id % 1024, bool_and($id >= 4503599627370496)"
			  . " FROM waitlist.$table GROUP BY 1, 2"))
	{
		my ($resource, $remainder, $above) = split /\|/, $row;
		$wrong++ if $remainder != $group{$resource} || $above ne 't';
	}
	return $wrong;
}
is(drawn_elsewhere('entry', 'entry_id'), 0, 'each entry got its id on the node that holds its resource');
is(sql("SELECT count(*) FROM waitlist.entry WHERE seq <> entry_id"), '0', '... which is its place in line');

# Cancellations on both workers at once: two sessions release into all 20
# resources while the workers promote.
sub release_all
{
	my ($round, @which) = @_;
	return join('',
		map { "SELECT waitlist_release('$_', 3, 'cancel-$round-$_');\n" } @which);
}
my @half1 = @resources[ 0 .. 9 ];
my @half2 = @resources[ 10 .. 19 ];
my @sessions;
for my $sql (release_all(1, @half1), release_all(1, @half2))
{
	my ($in, $o, $e) = ($sql, '', '');
	push @sessions,
	  IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $coordinator->connstr('postgres') ],
		'<', \$in, '>', \$o, '2>', \$e);
}
ok($_->finish, 'a releasing session succeeded') for @sessions;

wait_until("SELECT count(*) FROM waitlist.offer WHERE state = 'OPEN'", '60',
	'the workers offer every released unit');
is(drawn_elsewhere('offer', 'offer_id'), 0, "each resource's offers were made on its own node");
is(drawn_elsewhere('transition', 'transition_id'), 0, '... and audited there');
is( sql(
		"SELECT count(*) FROM waitlist.offer o WHERE NOT EXISTS"
		  . " (SELECT 1 FROM waitlist.outbox b WHERE b.resource_id = o.resource_id"
		  . "    AND b.offer_id = o.offer_id AND b.event_type = 'offer_created')"),
	'0', 'every offer has its outbox row');

# --- accepts, double taps, declines, leaves by id -----------------------------

# ids name their node: Citus sends a call by id straight there
is( sql(
		"SELECT count(*) FROM waitlist.entry"
		  . " WHERE get_shard_id_for_distribution_column('waitlist.resource', entry_id::text)"
		  . "    <> get_shard_id_for_distribution_column('waitlist.resource', resource_id)"),
	'0', "every entry id hashes to its resource's shard");
is( sql(
		"SELECT count(*) FROM waitlist.offer"
		  . " WHERE get_shard_id_for_distribution_column('waitlist.resource', offer_id::text)"
		  . "    <> get_shard_id_for_distribution_column('waitlist.resource', resource_id)"),
	'0', "... and every offer id to its offer's");
my $probe = sql("SELECT min(entry_id) FROM waitlist.entry WHERE resource_id = 'show-7'");
($rc, $out, $err) = $coordinator->psql('postgres',
	"SET client_min_messages = debug1; SELECT state FROM waitlist_status($probe)");
like($err, qr/pushing down the function call/, 'a status by entry id is sent by Citus to the node');

my $offer = sql("SELECT min(offer_id) FROM waitlist.offer WHERE resource_id = 'show-1' AND state = 'OPEN'");
is(sql("SELECT state FROM waitlist_accept($offer, 'tap-1')"), 'ACCEPTED', 'an accept through the coordinator');
is(sql("SELECT state FROM waitlist_accept($offer, 'tap-1')"), 'ACCEPTED', 'a double tap gets the same answer');
is(sql("SELECT count(*) FROM waitlist.accept_request WHERE offer_id = $offer"), '1', '... and is recorded once');
my $second = sql("SELECT min(offer_id) FROM waitlist.offer WHERE resource_id = 'show-11' AND state = 'OPEN'");
is(sql("SELECT waitlist_decline($second)"), 't', 'a decline through the coordinator');
my $waiting = sql("SELECT max(entry_id) FROM waitlist.entry WHERE resource_id = 'show-2' AND state = 'WAITING'");
is(sql("SELECT state FROM waitlist_status($waiting)"), 'WAITING', 'a status through the coordinator');
is(sql("SELECT waitlist_leave($waiting)"), 't', 'a leave through the coordinator');
wait_until(
	"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'show-11' AND state = 'OPEN'",
	'3', "the declined unit goes to the next fan, by the worker of show-11's node");

# --- calls inside a transaction block, and by token ------------------------------

# not sent on by Citus (a transaction block): passed on by the extension, in
# the caller's transaction
sql("BEGIN; SELECT waitlist_join('show-4', 'in-a-block'); SELECT waitlist_join('show-5', 'in-a-block'); COMMIT;");
is(sql("SELECT count(*) FROM waitlist.entry WHERE user_id = 'in-a-block'"), '2',
	'joins of two nodes in one transaction block are both made');
sql("BEGIN; SELECT waitlist_join('show-4', 'rolled-back'); SELECT waitlist_join('show-5', 'rolled-back'); ROLLBACK;");
is(sql("SELECT count(*) FROM waitlist.entry WHERE user_id = 'rolled-back'"), '0',
	'... and both rolled back with it');
my $linked = sql("SELECT min(offer_id) FROM waitlist.offer WHERE resource_id = 'show-5' AND state = 'OPEN'");
my $token = sql("SELECT waitlist_offer_token($linked)");
is(sql("SELECT state FROM waitlist_accept_token('$token', 'link-1')"), 'ACCEPTED',
	'an accept by signed token through the coordinator');
is(sql("SELECT state FROM waitlist.offer WHERE offer_id = $linked"), 'ACCEPTED', '... accepts its offer');
my $seen = sql("SELECT min(offer_id) FROM waitlist.offer WHERE resource_id = 'show-6' AND state = 'OPEN'");
is(sql("SELECT waitlist_offer_seen($seen)"), 't', 'an offer marked seen through the coordinator');
is(sql("SELECT waitlist_offer_seen($seen)"), 'f', '... once');

# --- the outbox, claimed from the coordinator ------------------------------------

my $pending = sql("SELECT count(*) FROM waitlist.outbox WHERE state = 'PENDING'");
cmp_ok($pending, '>', 50, 'the offers left outbox rows to deliver');
# a rate-limited channel: the coordinator's bucket bounds the whole cluster
sql("SELECT waitlist_set_channel_rate('webhook', 0.001, 7)");
is(sql("SELECT count(*) FROM waitlist_outbox_claim('relay-0', 1000)"), '7',
	"a claim hands out no more rows of a rate-limited channel than its bucket holds, over all nodes");
is(sql("SELECT count(*) FROM waitlist_outbox_claim('relay-0', 1000)"), '0', '... and then none');
sql("SELECT waitlist_set_channel_rate('webhook', NULL)");
my $claimed = sql(
	"SELECT count(*), count(DISTINCT resource_id), count(DISTINCT outbox_id)"
	  . " FROM waitlist_outbox_claim('relay-1', 1000)");
my ($rows, $resources_claimed, $distinct) = split /\|/, $claimed;
cmp_ok($rows, '>', 40, 'a claim from the coordinator leases rows');
cmp_ok($resources_claimed, '>', 10, '... of resources on both nodes');
is($distinct, $rows, '... each once');
my @leased = split /\n/, sql(
	"SELECT outbox_id || ',' || lease_token FROM waitlist.outbox WHERE lease_owner = 'relay-1'"
	  . " AND lease_expires_at > now() ORDER BY outbox_id LIMIT 3");
my ($ack_id, $ack_token) = split /,/, $leased[0];
my ($fail_id, $fail_token) = split /,/, $leased[1];
is(sql("SELECT waitlist_outbox_ack($ack_id, $ack_token)"), 't', 'an ack through the coordinator');
is(sql("SELECT state FROM waitlist.outbox WHERE outbox_id = $ack_id"), 'DELIVERED', '... delivers the row');
is(sql("SELECT waitlist_outbox_fail($fail_id, $fail_token, 'provider down')"), 'f', 'a failure through the coordinator');
is(sql("SELECT state || ' ' || attempts FROM waitlist.outbox WHERE outbox_id = $fail_id"), 'PENDING 1',
	'... is retried later');
($rc, $out, $err) = $coordinator->psql('postgres', "SELECT waitlist_outbox_ack($ack_id, $ack_token + 1)");
like($err, qr/is stale/, 'a stale lease is refused through the coordinator too');
is(sql("SELECT count(*) FROM waitlist_outbox_claim('relay-2', 1000) WHERE outbox_id = $ack_id"), '0',
	'a second claim does not hand out a delivered row');

# --- expiry by each node's worker ---------------------------------------------

sql("SELECT waitlist_create_resource('show-ttl', offer_ttl => '2 seconds')");
$coordinator->safe_psql('postgres',
	join('', map { "SELECT waitlist_join('show-ttl', 'late-$_');\n" } 1 .. 5));
sql("SELECT waitlist_release('show-ttl', 2, 'ttl-1')");
wait_until("SELECT count(*) FROM waitlist.offer WHERE resource_id = 'show-ttl' AND state = 'EXPIRED'",
	'4', 'offers expire at their deadline and the units pass on, twice');

# --- a worker node's promotion worker killed mid-storm ------------------------

my $victim = $on_node{'show-2'} == $worker1->port ? $worker1 : $worker2;
my $storm = release_all(2, @resources);
my ($in, $o, $e) = ($storm, '', '');
my $h = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $coordinator->connstr('postgres') ],
	'<', \$in, '>', \$o, '2>', \$e);
$victim->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'");
ok($h->finish, 'the storm of releases went through') or diag($e);
wait_until("SELECT count(*) FROM waitlist.capacity_event WHERE state = 'PENDING'", '0',
	'the restarted worker takes up what its node had pending');
wait_until(
	"SELECT sum(free_units) FROM waitlist.resource WHERE resource_id LIKE 'show-%' AND resource_id <> 'show-ttl'",
	'0', 'every released unit is offered');

# --- a shard moved mid-scenario, and back ------------------------------------

# who joins after a move is behind everyone who joined before, whichever
# node's sequence is ahead
sub move_shard_of
{
	my ($resource) = @_;
	my $from = shard_node_of($coordinator, $resource);
	my $to = $from == $worker1->port ? $worker2 : $worker1;
	my $source = $from == $worker1->port ? $worker1 : $worker2;
	sql(sprintf(
			"SELECT citus_move_shard_placement(get_shard_id_for_distribution_column('waitlist.resource', '%s'),"
			  . " '%s', %d, '%s', %d, shard_transfer_mode => 'block_writes')",
			$resource, $source->host, $source->port, $to->host, $to->port));
	return $to->port;
}
for my $round (1, 2)
{
	my $to = move_shard_of('show-3');
	is(shard_node_of($coordinator, 'show-3'), $to, "show-3's shards moved (move $round)");
	my $before = sql("SELECT count(*) FROM waitlist.entry WHERE resource_id = 'show-3' AND state = 'WAITING'");
	my $late = sql("SELECT waitlist_join('show-3', 'moved-fan-$round')");
	is(sql("SELECT position FROM waitlist_status($late)"), $before + 1,
		"a fan who joins after move $round is last in line");
	is( sql(
			"SELECT count(*) FROM waitlist.entry WHERE resource_id = 'show-3'"
			  . " AND seq >= (SELECT seq FROM waitlist.entry WHERE entry_id = $late)"),
		'1', '... behind every entry made before the move');
	sql("SELECT waitlist_release('show-3', 1, 'after-move-$round')");
	wait_until("SELECT sum(free_units) FROM waitlist.resource WHERE resource_id = 'show-3'", '0',
		"the worker of show-3's new node promotes it");
}

# --- the workers of every node, from the coordinator ----------------------------

is( sql(
		"SELECT count(DISTINCT node_port) FILTER (WHERE pid IS NOT NULL AND last_error IS NULL)"
		  . " FROM waitlist_cluster_worker_status()"),
	'3', "every node's promotion worker reports to the coordinator");
cmp_ok(
	sql("SELECT sum(offers_made) FROM waitlist_cluster_worker_status() WHERE node_port <> " . $coordinator->port),
	'>', 0, "... with the offers the workers of the worker nodes made");

# --- every resource lives on one node -----------------------------------------

my %seen;
for my $worker ($worker1, $worker2)
{
	my $local = $worker->safe_psql(
		'postgres', q{
SELECT string_agg(format('SELECT resource_id FROM %s', shard_name(s.logicalrelid, s.shardid)), ' UNION ')
FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
JOIN pg_dist_partition d ON d.logicalrelid = s.logicalrelid AND d.partmethod = 'h'
WHERE p.groupid = (SELECT groupid FROM pg_dist_local_group)
  AND s.logicalrelid::text LIKE 'waitlist%'});
	for my $r (split /\n/, $worker->safe_psql('postgres', $local))
	{
		$seen{$r}{ $worker->port } = 1;
	}
}
is(scalar(grep { keys %{ $seen{$_} } > 1 } keys %seen), 0, 'no resource has rows on two nodes');
is(scalar(keys %seen), 21, '... and every resource has rows on one');

# --- nothing broken anywhere ------------------------------------------------------

is(sql("SELECT count(*) FROM waitlist_check()"), '0', 'waitlist_check() finds nothing on any node');
is( sql(
		"SELECT count(*) FROM waitlist.offer o WHERE NOT EXISTS"
		  . " (SELECT 1 FROM waitlist.outbox b WHERE b.resource_id = o.resource_id"
		  . "    AND b.offer_id = o.offer_id AND b.event_type = 'offer_created')"),
	'0', 'every offer made has its outbox row');

done_testing();
