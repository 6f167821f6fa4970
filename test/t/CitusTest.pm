# CitusTest: a Citus cluster of one coordinator and two workers, each a
# PostgreSQL::Test::Cluster node on this machine, with the waitlist
# extension distributed over it (waitlist_distribute()).

package CitusTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(citus_available require_citus citus_cluster shard_node_of);

# Whether Citus is installed for the PostgreSQL the tests run.
sub citus_available
{
	my $pkglibdir = `pg_config --pkglibdir`;
	chomp $pkglibdir;
	return -e "$pkglibdir/citus.so";
}

# Skip the test file without Citus; in CI, where .ci/run builds Citus
# first, fail it instead: a missing Citus there is a broken build.
sub require_citus
{
	return if citus_available();
	if ($ENV{CI})
	{
		fail('Citus is installed');
		done_testing();
		exit;
	}
	plan skip_all => 'Citus is not installed for this PostgreSQL';
}

# Three started nodes (coordinator first), Citus set up on each and the
# workers added; CREATE EXTENSION waitlist on the nodes named in
# $with_waitlist (all by default).  Each node runs one promotion worker.
sub citus_cluster
{
	my (%opts) = @_;
	my @nodes;
	for my $name ('coordinator', 'worker1', 'worker2')
	{
		my $node = PostgreSQL::Test::Cluster->new($name);
		$node->init;
		my $preload = $name eq 'coordinator' ? 'citus,pg_cron,waitlist' : 'citus,waitlist';
		# the nodes listen on a socket directory only: Citus's connections to
		# the node itself (shard moves) must use it too
		my $host = $node->host;
		$node->append_conf(
			'postgresql.conf', qq{
shared_preload_libraries = '$preload'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
wal_level = logical
max_prepared_transactions = 20
max_connections = 100
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
restart_after_crash = on
citus.max_cached_conns_per_worker = 2
citus.local_hostname = '$host'
$opts{conf}
});
		$node->start;
		# waitlist first: Citus would otherwise install it on the workers
		# it adds, and a node could not lack it
		$node->safe_psql('postgres', 'CREATE EXTENSION waitlist')
		  unless $name eq ($opts{without_waitlist} // '');
		$node->safe_psql('postgres', 'CREATE EXTENSION citus');
		push @nodes, $node;
	}
	my ($coordinator, @workers) = @nodes;
	$coordinator->safe_psql('postgres',
		sprintf("SELECT citus_set_coordinator_host('%s', %d)", $coordinator->host, $coordinator->port));
	for my $worker (@workers)
	{
		$coordinator->safe_psql('postgres',
			sprintf("SELECT citus_add_node('%s', %d)", $worker->host, $worker->port));
	}
	return @nodes;
}

# The port of the node that holds the resource's shards.
sub shard_node_of
{
	my ($coordinator, $resource) = @_;
	return $coordinator->safe_psql(
		'postgres', qq{
SELECT p.nodeport FROM pg_dist_placement pl
JOIN pg_dist_node p ON p.groupid = pl.groupid
WHERE pl.shardid = get_shard_id_for_distribution_column('waitlist.resource', '$resource')});
}

1;
