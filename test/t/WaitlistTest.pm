# WaitlistTest: the small helpers every TAP test of waitlist uses, bound to
# the test's node with use_node().

package WaitlistTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(use_node worker_node sql wait_until wait_within entry_state);
our @EXPORT_OK = qw(slurp wait_for);

my $node;

# The node the other helpers talk to (database postgres).
sub use_node
{
	($node) = @_;
	return;
}

# A started node in worker mode with one promotion worker serving database
# postgres, more settings from $conf, and the extension created; the other
# helpers use it.
sub worker_node
{
	my ($name, $conf) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $new = PostgreSQL::Test::Cluster->new($name);
	use_node($new);
	$new->init;
	$new->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
$conf});
	$new->start;
	wait_until(
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'",
		'1', 'the worker runs');
	sql('CREATE EXTENSION waitlist');
	return $new;
}

# Run SQL, fail the test on error, return its output.
sub sql
{
	my ($query) = @_;
	return $node->safe_psql('postgres', $query);
}

# Pass once the query returns the expected value, fail at the poll timeout.
sub wait_until
{
	my ($query, $expected, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ok($node->poll_query_until('postgres', $query, $expected), $what);
	return;
}

# Pass once the query returns the expected value within $seconds, fail
# after that: for what must happen promptly, not just eventually.
sub wait_within
{
	my ($query, $expected, $seconds, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $deadline = time() + $seconds;
	my $got;
	while (1)
	{
		$got = $node->safe_psql('postgres', $query);
		last if $got eq $expected || time() >= $deadline;
		select(undef, undef, undef, 0.1);
	}
	is($got, $expected, $what);
	return;
}

# The query that reads an entry's state, for wait_until().
sub entry_state
{
	my ($entry_id) = @_;
	return "SELECT state FROM waitlist_status($entry_id)";
}

# A file's contents; empty if it does not exist (yet).
sub slurp
{
	my ($file) = @_;
	open(my $fh, '<', $file) or return '';
	local $/;
	my $text = <$fh>;
	close $fh;
	return $text // '';
}

# Poll a condition (a code reference) for up to $secs seconds (20 by
# default); whether it came true.
sub wait_for
{
	my ($cond, $secs) = @_;
	my $deadline = time + ($secs // 20);
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(50_000);
	}
	return 0;
}

1;
