# Storage of the hot tables: which of the hot path's UPDATEs are HOT
# (heap-only: no new index entries), read from pg_stat_user_tables per
# phase of a scenario (joins, a release that promotes, relay claims and
# acknowledgements, accepts and declines).  The outbox claim changes only
# lease columns, which no index holds, so it must stay HOT; that is
# asserted (an index on a lease column, or a fillfactor leaving no room,
# would fail it: at 1.0's fillfactor 80 far fewer than half the claims
# were HOT, since a claim updates the rows of whole pages at once).  The other ratios are printed for the documentation:
# state changes and free_units changes touch columns of partial index
# predicates and cannot be HOT.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql);

my $node = PostgreSQL::Test::Cluster->new('hot');
use_node($node);
$node->init;
$node->append_conf('postgresql.conf', "autovacuum = off\nlog_statement = none\n");
$node->start;
sql('CREATE EXTENSION waitlist');

my @tables = qw(resource entry offer outbox);

# updates and HOT updates so far, per table (each sql() is a session,
# whose statistics are flushed when it ends)
sub counters
{
	my %c;
	for my $line (split /\n/, sql(
			"SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
			  . " WHERE schemaname = 'waitlist'"))
	{
		my ($rel, $upd, $hot) = split /\|/, $line;
		$c{$rel} = [ $upd, $hot ];
	}
	return \%c;
}

my %phase_hot;

sub phase
{
	my ($name, $query) = @_;
	my $before = counters();
	sql($query);
	my $after = counters();
	for my $t (@tables)
	{
		my $upd = $after->{$t}[0] - $before->{$t}[0];
		my $hot = $after->{$t}[1] - $before->{$t}[1];
		next if $upd == 0;
		$phase_hot{"$name $t"} = $hot / $upd;
		diag(sprintf("%-8s %-9s %6d updates, %6d HOT (%3.0f %%)",
				$name, $t, $upd, $hot, 100 * $hot / $upd));
	}
	return;
}

sql("SELECT waitlist_create_resource('hall', '1 hour', channels => '{webhook,email}')");
phase('join', "SELECT count(waitlist_join('hall', 'fan' || i)) FROM generate_series(1, 4000) i");
phase('release', "SELECT waitlist_release('hall', 1000, 'refund-1')");
# a relay's claims, each its own transaction, as a relay makes them
phase('claim',
	"SELECT count(*) FROM waitlist_outbox_claim('relay', 100, '1 hour');\n" x 20);
phase(
	'ack', q{
SELECT count(waitlist_outbox_ack(outbox_id, lease_token)) FROM waitlist.outbox
WHERE lease_token IS NOT NULL AND state = 'PENDING'});
phase(
	'accept', q{
SELECT count(a.state) FROM (SELECT offer_id FROM waitlist.offer WHERE state = 'OPEN'
                            ORDER BY offer_id LIMIT 500) o,
     LATERAL waitlist_accept(o.offer_id, 'k' || o.offer_id) a});
phase(
	'decline', q{
SELECT count(waitlist_decline(offer_id)) FROM (SELECT offer_id FROM waitlist.offer WHERE state = 'OPEN'
                                                ORDER BY offer_id LIMIT 200) o});
# fans opening their offers, one call each
phase('seen', q{
SELECT pg_catalog.format('SELECT waitlist_offer_seen(%s)', offer_id)
FROM waitlist.offer WHERE state = 'OPEN' ORDER BY offer_id \gexec});

cmp_ok($phase_hot{'claim outbox'}, '>=', 0.9,
	'outbox claims are HOT updates (they change no indexed column)');
cmp_ok($phase_hot{'seen offer'}, '>=', 0.9,
	'marking an offer seen is a HOT update');
is(sql('SELECT count(*) FROM waitlist_check()'), '0', 'waitlist_check() finds nothing');

$node->stop;
done_testing();
