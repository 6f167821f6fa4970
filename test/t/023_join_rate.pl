# Join rate limits: a resource's joins beyond join_rate_per_second (bursts of
# join_burst) are refused with WL018 and a hint saying when to retry; a fan
# already in line is never refused (a double tap returns their entry); other
# resources are not held back; tokens come back with time; a change of the
# limit applies once it commits; and after a restart the buckets start full.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = PostgreSQL::Test::Cluster->new('join_rate');
use_node($node);
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'waitlist'");
$node->start;
sql('CREATE EXTENSION waitlist');

# a slow rate, so that no token comes back while the test looks
sql("SELECT waitlist_create_resource('storm', '1 hour', join_rate_per_second => 0.01, join_burst => 3)");
sql("SELECT waitlist_create_resource('calm', '1 hour')");

my @ids = map { sql("SELECT waitlist_join('storm', 'fan-$_')") } 1 .. 3;
is(scalar(grep { /^\d+$/ } @ids), 3, 'a burst of three joins is admitted');

my ($rc, $out, $err) = $node->psql('postgres', "SELECT waitlist_join('storm', 'bot-1')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/WL018/, 'the fourth join is refused with WL018');
like($err, qr/HINT:\s+Retry in \d+ ms\./, 'with a hint saying when to retry');
is(sql("SELECT count(*) FROM waitlist.entry WHERE resource_id = 'storm'"), '3',
	'and nothing was written for it');

is(sql("SELECT waitlist_join('storm', 'fan-1')"), $ids[0],
	'a double tap of a fan in line is never refused: it returns their entry');
is(sql("SELECT waitlist_join('calm', 'bot-1') > 0"), 't', 'another resource is not held back');

# a change of the limit applies once it commits
sql("BEGIN; SELECT waitlist_alter_resource('storm', join_rate_per_second => 1000, join_burst => 1000); ROLLBACK;");
($rc, $out, $err) = $node->psql('postgres', "SELECT waitlist_join('storm', 'bot-2')");
like($err, qr/too many joins/, 'an alter rolled back changes nothing');
sql("SELECT waitlist_alter_resource('storm', join_rate_per_second => 1000, join_burst => 1000)");
is(sql("SELECT waitlist_join('storm', 'fan-4') > 0"), 't', 'a raised limit admits joins once committed');
sql("SELECT waitlist_alter_resource('storm', join_rate_per_second => 0.5, join_burst => 1)");
is(sql("SELECT waitlist_join('storm', 'fan-5') > 0"), 't', 'a lower limit: its burst of one is admitted');
($rc, $out, $err) = $node->psql('postgres', "SELECT waitlist_join('storm', 'fan-6')");
like($err, qr/too many joins/, 'the next join at once is refused');
usleep(2_200_000);
is(sql("SELECT waitlist_join('storm', 'fan-6') > 0"), 't', 'tokens come back with time (one per two seconds)');
sql("SELECT waitlist_alter_resource('storm', clear_join_rate => true)");
is(sql("SELECT count(*) FROM (SELECT waitlist_join('storm', 'many-' || g) FROM generate_series(1, 50) g) j"),
	'50', 'without a limit every join is admitted');

# after a restart the buckets start full (the limit is approximate across it)
sql("SELECT waitlist_alter_resource('storm', join_rate_per_second => 0.01, join_burst => 2)");
sql("SELECT waitlist_join('storm', 'before-' || g) FROM generate_series(1, 2) g");
($rc, $out, $err) = $node->psql('postgres', "SELECT waitlist_join('storm', 'before-3')");
like($err, qr/too many joins/, 'the burst is spent');
$node->restart;
is(sql("SELECT count(*) FROM (SELECT waitlist_join('storm', 'after-' || g) FROM generate_series(1, 2) g) j"),
	'2', 'after a restart the bucket is full again');

is(sql('SELECT count(*) FROM waitlist_check()'), '0', 'waitlist_check() finds nothing');
$node->stop;
done_testing();
