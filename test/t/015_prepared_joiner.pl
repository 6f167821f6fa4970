# A prepared transaction that joined a resource holds the resource's gate
# shared until COMMIT PREPARED, however long that takes (across restarts).
# Releases, declines and expiry of that resource must not wait for it: they
# return at once, and the units they free are offered by the sweep once the
# prepared join has committed.  lock_timeout turns a wait into a failure.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql);

my $node = PostgreSQL::Test::Cluster->new('prepared_joiner');
use_node($node);
$node->init;
$node->append_conf('postgresql.conf', "max_prepared_transactions = 2\n");
$node->start;

sub state_of
{
	my ($user) = @_;
	return sql("SELECT state FROM waitlist.entry WHERE user_id = '$user'");
}

# Run a statement with a lock_timeout; return (exit code, output, stderr).
sub without_waiting
{
	my ($query) = @_;
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', "SET lock_timeout = '5s'; $query");
	return ($ret, $stdout, $stderr);
}

sql('CREATE EXTENSION waitlist');
sql(
	q{SELECT waitlist_create_resource('prep', '10 minutes');
SELECT waitlist_join('prep', 'alice');
SELECT waitlist_release('prep', 1, 'ev-1');
SELECT waitlist_join('prep', 'bob');});
is(state_of('alice'), 'OFFERED', 'alice holds the first unit');

sql(
	q{BEGIN;
SELECT waitlist_join('prep', 'carol');
PREPARE TRANSACTION 'carol-joins';});
is(sql('SELECT count(*) FROM pg_prepared_xacts'), '1', 'carol\'s join is prepared');

my ($ret, $out, $err) =
  without_waiting(q{SELECT waitlist_release('prep', 1, 'ev-2')});
is($ret, 0, 'a release does not wait for the prepared join') or diag($err);
is($out, 't', 'and records its event');

($ret, $out, $err) = without_waiting(
	q{SELECT waitlist_decline(offer_id) FROM waitlist.offer WHERE user_id = 'alice'});
is($ret, 0, 'a decline does not wait for the prepared join') or diag($err);
is($out, 't', 'and declines the offer');

is(sql('SELECT waitlist_sweep()'), '0', 'a sweep meanwhile');
is(state_of('bob'), 'OFFERED', 'offers bob one of the two units');

sql(
	q{UPDATE waitlist.offer SET expires_at = now() - interval '1 second'
WHERE user_id = 'bob' AND state = 'OPEN'});
($ret, $out, $err) = without_waiting('SELECT waitlist_sweep()');
is($ret, 0, 'the sweep does not wait for the prepared join') or diag($err);
is($out, '1', 'and expires bob\'s offer, past its deadline');
is(state_of('bob'), 'EXPIRED', 'bob\'s entry expired');
is(sql('SELECT free_units FROM waitlist.resource'), '2', 'both units are free');

sql(q{COMMIT PREPARED 'carol-joins'});
sql('SELECT waitlist_sweep()');
is(state_of('carol'), 'OFFERED', 'once carol\'s join commits, the sweep offers her a unit');
is(sql('SELECT free_units FROM waitlist.resource'), '1',
	'the other stays free: nobody else waits');
is(sql('SELECT count(*) FROM waitlist_check()'), '0', 'waitlist_check() finds nothing');

$node->stop;
done_testing();
