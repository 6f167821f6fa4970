# A setting that 1.0 let through (or that was written by hand) on one
# resource does not stop the promotion worker for the others: with a
# wave_interval of a hundred million years on one resource, the worker's
# look for idle free units and its next deadline used to fail with 22008
# for every resource it owns, so an idle unit of another resource was never
# offered.  The database stays on 1.0 (served by this library) until the
# end, when ALTER EXTENSION UPDATE clamps the row to the bounds.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = PostgreSQL::Test::Cluster->new('bad_settings');
use_node($node);
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'postgres'
waitlist.promotion_mode = 'worker'
waitlist.naptime = '500ms'
});
$node->start;

sql(q{CREATE EXTENSION waitlist VERSION '1.0'});

# "huge": one wave of one offer, spent, a unit left free for the next wave,
# and a wave_interval no timestamp arithmetic survives
sql(q{SELECT waitlist_create_resource('huge', '1 hour', wave_size => 1, wave_interval => '1 minute')});
sql(q{SELECT count(waitlist_join('huge', 'h' || i)) FROM generate_series(1, 3) i});
sql(q{SELECT waitlist_release('huge', 2, 'huge-1')});
wait_until(
	q{SELECT count(*) FROM waitlist.offer WHERE resource_id = 'huge'},
	'1', 'the worker makes the one offer of the first wave of "huge"');
sql(q{UPDATE waitlist.resource SET wave_interval = '100000000 years' WHERE resource_id = 'huge'});

# "sane": a unit released while nobody waits, then a fan joins; in worker
# mode the worker offers it (its look for idle units finds it)
sql(q{SELECT waitlist_create_resource('sane', '1 hour')});
sql(q{SELECT waitlist_release('sane', 1, 'sane-1')});
wait_until(
	q{SELECT free_units FROM waitlist.resource WHERE resource_id = 'sane'},
	'1', 'the worker adds the released unit of "sane" to its free units');
my $ann = sql(q{SELECT waitlist_join('sane', 'ann')});

wait_until(entry_state($ann), 'OFFERED',
	'the worker offers the idle unit of "sane" despite the bad row of "huge"');
unlike(slurp_file($node->logfile), qr/out of range/,
	'no statement of the worker failed with a value out of range');
is( sql(
		q{SELECT e.state FROM waitlist.entry e
		  WHERE e.resource_id = 'huge' AND e.user_id = 'h2'}),
	'WAITING',
	'the next fan of "huge" still waits for a wave that has not ended');

sql('ALTER EXTENSION waitlist UPDATE');
is(sql(q{SELECT wave_interval FROM waitlist.resource WHERE resource_id = 'huge'}),
	'1 year', 'the update clamps the wave_interval of "huge" to 1 year');
is( sql(
		q{SELECT coalesce(string_agg(invariant || ' ' || resource_id || ': ' || detail, '; '), '')
		  FROM waitlist_check()}),
	'',
	'waitlist_check() finds nothing wrong after the update');

$node->stop;
done_testing();
