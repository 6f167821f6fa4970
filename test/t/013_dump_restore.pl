# Backups: a database dumped mid-scenario (entries in every state, open,
# accepted, declined and expired offers, outbox rows claimed and delivered,
# capacity events, a channel with a rate) and restored into a new database
# the way "Backup and restore" in docs/operations.md tells a DBA to, once from a custom
# dump of a fresh 1.1 install and once from a plain dump of a database
# created at 1.0 and updated; in both, some rows were archived first.
# After each restore waitlist_check() finds
# nothing, every table holds exactly the rows it held, the channel rates are
# back, and new ids continue after the restored ones.  (1.0 registered no
# table with pg_extension_config_dump: the restore gave back empty tables.)

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest qw(use_node sql);

my $node = PostgreSQL::Test::Cluster->new('dump');
use_node($node);
$node->init;
$node->append_conf('postgresql.conf', "log_statement = none\n");
$node->start;

my @tables = (
	(map { "waitlist.$_" } qw(resource entry offer accept_request capacity_event outbox channel transition)),
	(map { "waitlist_archive.$_" } qw(entry offer accept_request capacity_event outbox transition resource_totals)));
my @sequences = qw(entry_seq lease_token_seq entry_entry_id_seq offer_offer_id_seq
  outbox_outbox_id_seq transition_transition_id_seq);

sub db_sql
{
	my ($db, $query) = @_;
	return $node->safe_psql($db, $query);
}

# One line per table: its row count and a digest of all its rows; one per
# sequence: its position.
sub contents
{
	my ($db) = @_;
	my $query = join(
		"\nUNION ALL ",
		(
			map {
				"SELECT '$_', count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')"
				  . " FROM $_ t"
			} @tables
		),
		(map { "SELECT '$_', last_value || ' ' || is_called FROM waitlist.$_" } @sequences));
	return db_sql($db, $query);
}

# A waitlist caught mid-way: every state, and something in every table.
sub scenario
{
	my ($db, $prefix) = @_;
	db_sql(
		$db, qq{
CREATE FUNCTION public.${prefix}_book(resource_id text, user_id text, offer_id bigint, idempotency_key text)
RETURNS text LANGUAGE sql AS \$\$SELECT 'seat-' || offer_id\$\$;
SELECT waitlist_create_resource('$prefix-hall', '1 hour',
    booking_function => 'public.${prefix}_book(text, text, bigint, text)');
SELECT waitlist_create_resource('$prefix-club', '1 second');
SELECT count(waitlist_join('$prefix-hall', 'fan' || i)) FROM generate_series(1, 8) i;
SELECT count(waitlist_join('$prefix-club', 'fan' || i)) FROM generate_series(1, 3) i;
SELECT waitlist_release('$prefix-hall', 4, 'refund-1');
SELECT waitlist_release('$prefix-club', 1, 'refund-2');
});
	my ($first, $second) = split /\n/, db_sql($db,
		"SELECT offer_id FROM waitlist.offer WHERE resource_id = '$prefix-hall' AND state = 'OPEN' ORDER BY offer_id LIMIT 2"
	);
	db_sql(
		$db, qq{
SELECT state FROM waitlist_accept($first, 'key-$first');
SELECT waitlist_decline($second);
SELECT waitlist_leave(max(entry_id)) FROM waitlist.entry
WHERE resource_id = '$prefix-hall' AND state = 'WAITING';
SELECT waitlist_set_channel_rate('sms', 2.5, 20);
SELECT waitlist_set_channel_rate('email', 100, 1000);
SELECT count(*) FROM waitlist_outbox_claim('relay-1', 3, '1 hour');
SELECT waitlist_outbox_ack(c.outbox_id, c.lease_token)
FROM waitlist_outbox_claim('relay-2', 2, '1 hour') c;
});
	# the club's offer expires
	sleep(2);
	db_sql($db, "SELECT waitlist_sweep()");
	return;
}

# What a scenario must have produced, so that the round trip proves
# something about each kind of row.
sub check_mid_scenario
{
	my ($db, $what) = @_;
	is( db_sql(
			$db, q{
SELECT string_agg(DISTINCT e.state, ',' ORDER BY e.state) || ' / '
       || (SELECT string_agg(DISTINCT o.state, ',' ORDER BY o.state) FROM waitlist.offer o) || ' / '
       || (SELECT string_agg(DISTINCT b.state, ',' ORDER BY b.state) FROM waitlist.outbox b) || ' / '
       || (SELECT count(*) FROM waitlist.capacity_event) || ' events, '
       || (SELECT count(*) FROM waitlist.accept_request) || ' accept requests'
FROM waitlist.entry e}),
		'ACCEPTED,CANCELLED,DECLINED,EXPIRED,OFFERED,WAITING / ACCEPTED,DECLINED,EXPIRED,OPEN / DELIVERED,PENDING / 2 events, 1 accept requests',
		"$what: the dumped database is mid-scenario");
	like(db_sql($db, "SELECT reservation_ref FROM waitlist.offer WHERE state = 'ACCEPTED'"),
		qr/^seat-\d+$/, "$what: the accepted offer was booked by the booking function");
	return;
}

# A month passes (rows aged by hand) and waitlist_archive() moves what is
# over: the dump then holds rows in the archive tables too.
sub archive_some
{
	my ($db) = @_;
	db_sql(
		$db, q{
UPDATE waitlist.entry SET updated_at = updated_at - interval '40 days';
UPDATE waitlist.capacity_event SET processed_at = processed_at - interval '40 days';
CALL waitlist_archive_all('30 days', 1);
});
	is( db_sql(
			$db, q{
SELECT (SELECT string_agg(DISTINCT state, ',' ORDER BY state) FROM waitlist_archive.entry) || ' / '
       || (SELECT count(*) FROM waitlist_archive.transition) || ' transitions, '
       || (SELECT count(*) FROM waitlist_archive.capacity_event) || ' events, '
       || (SELECT sum(units_released) FROM waitlist_archive.resource_totals) || ' units'}),
		'CANCELLED / 2 transitions, 2 events, 5 units',
		"$db: the left entry and the processed events are archived");
	is(db_sql($db, 'SELECT count(*) FROM waitlist_check()'),
		'0', "$db: waitlist_check() finds nothing after archiving");
	return;
}

# Restore as docs/operations.md says: as a superuser, in one transaction, with
# session_replication_role = replica so that the restored rows are not
# audited (their transition rows are restored too) nor checked again.
sub restore
{
	my ($target, @command) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $target");
	local $ENV{PGOPTIONS} = '-c session_replication_role=replica';
	$node->command_ok([@command], "$target: restore succeeds");
	return;
}

sub check_round_trip
{
	my ($source, $target, $prefix, $rates) = @_;

	is(db_sql($target, 'SELECT count(*) FROM waitlist_check()'),
		'0', "$target: waitlist_check() finds nothing");
	is(contents($target), contents($source),
		"$target: every table and sequence is as it was dumped");
	is(db_sql($target, "SELECT channel || ' ' || rate_per_second || ' ' || burst FROM waitlist.channel"
		  . " WHERE rate_per_second IS NOT NULL ORDER BY channel"),
		$rates, "$target: channel rates are back");

	# new rows get ids past every restored one
	my $max = db_sql(
		$target, q{
SELECT (SELECT max(entry_id) FROM waitlist.entry) || ' ' || (SELECT max(seq) FROM waitlist.entry) || ' '
       || (SELECT max(offer_id) FROM waitlist.offer) || ' ' || (SELECT max(outbox_id) FROM waitlist.outbox) || ' '
       || (SELECT max(transition_id) FROM waitlist.transition) || ' '
       || (SELECT max(lease_token) FROM waitlist.outbox)});
	my ($entry, $seq, $offer, $outbox, $transition, $lease) = split / /, $max;
	my $new_entry = db_sql($target, "SELECT waitlist_join('$prefix-hall', 'newcomer')");
	db_sql($target, "SELECT waitlist_release('$prefix-hall', 3, 'after-restore')");
	my $new = db_sql(
		$target, qq{
SELECT (SELECT seq FROM waitlist.entry WHERE entry_id = $new_entry) || ' '
       || (SELECT min(offer_id) FROM waitlist.offer WHERE offer_id > $offer) || ' '
       || (SELECT count(*) FROM waitlist.offer WHERE offer_id > $offer) || ' '
       || (SELECT min(outbox_id) FROM waitlist.outbox WHERE outbox_id > $outbox) || ' '
       || (SELECT min(transition_id) FROM waitlist.transition WHERE transition_id > $transition) || ' '
       || (SELECT count(*) FROM waitlist.transition WHERE transition_id <= $transition)});
	my ($new_seq, $new_offer, $offers_after, $new_outbox, $new_transition, $old_transitions) =
	  split / /, $new;
	my $new_lease = db_sql($target,
		"SELECT max(lease_token) FROM waitlist_outbox_claim('relay-3', 1, '1 hour')");
	cmp_ok($new_entry, '>', $entry, "$target: a new entry id follows the restored ones");
	cmp_ok($new_seq, '>', $seq, "$target: a new join is behind everyone in line");
	is($offers_after, 3, "$target: the release after the restore made its offers");
	my $offer_id = db_sql($target, "SELECT min(offer_id) FROM waitlist.offer WHERE offer_id > $offer");
	is(db_sql($target, "SELECT state || ' ' || reservation_ref FROM waitlist_accept($offer_id, 'after')"),
		"ACCEPTED seat-$offer_id", "$target: the restored booking function books a new offer");
	cmp_ok($new_offer, '>', $offer, "$target: new offer ids follow the restored ones");
	cmp_ok($new_outbox, '>', $outbox, "$target: new outbox ids follow the restored ones");
	cmp_ok($new_transition, '>', $transition,
		"$target: new transition ids follow the restored ones");
	cmp_ok($new_lease, '>', $lease, "$target: new lease tokens follow the restored ones");
	is($old_transitions, db_sql($source, 'SELECT count(*) FROM waitlist.transition'),
		"$target: the restore wrote no audit rows of its own");
	is(db_sql($target, 'SELECT count(*) FROM waitlist_check()'),
		'0', "$target: waitlist_check() finds nothing after new work");
	return;
}

#
# A fresh 1.1 install, custom-format dump, pg_restore
#
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
db_sql('fresh', 'CREATE EXTENSION waitlist');
scenario('fresh', 'a');
check_mid_scenario('fresh', 'fresh');
archive_some('fresh');
my $dump = $node->basedir . '/fresh.dump';
$node->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', 'fresh'], 'fresh: pg_dump -Fc');
restore('fresh_restored', 'pg_restore', '--single-transaction', '-d', 'fresh_restored', $dump);
check_round_trip('fresh', 'fresh_restored', 'a', "email 100 1000\nsms 2.5 20");

# what lets the restore bring the rates back replaces only a channel still
# as the install script made it, never a configured one
my ($rc, $out, $err) = $node->psql('fresh_restored',
	"INSERT INTO waitlist.channel (channel, rate_per_second, burst) VALUES ('sms', 1, 1)");
like($err, qr/duplicate key value violates unique constraint "channel_pkey"/,
	'a configured channel is not replaced by an insert');
is(db_sql('fresh_restored',
		"INSERT INTO waitlist.channel (channel, rate_per_second, burst) VALUES ('push', 7, 7);"
		  . " SELECT string_agg(channel || ' ' || coalesce(rate_per_second::text, '-'), ',' ORDER BY channel)"
		  . " FROM waitlist.channel"),
	'booking -,email 100,push 7,sms 2.5,webhook -',
	'an inserted row replaces a channel still at its defaults');

#
# A database created at 1.0, with a rate set then, updated with ALTER
# EXTENSION and used on; plain dump restored with psql
#
$node->safe_psql('postgres', 'CREATE DATABASE updated');
db_sql('updated', "CREATE EXTENSION waitlist VERSION '1.0'");
db_sql('updated', "SELECT waitlist_set_channel_rate('push', 50, 100)");
scenario('updated', 'b');
db_sql('updated', 'ALTER EXTENSION waitlist UPDATE');
is(db_sql('updated', "SELECT extversion FROM pg_extension WHERE extname = 'waitlist'"),
	'1.1', 'updated: the database is at 1.1');
db_sql('updated', "SELECT count(waitlist_join('b-hall', 'late' || i)) FROM generate_series(1, 3) i");
check_mid_scenario('updated', 'updated');
archive_some('updated');
my $plain = $node->basedir . '/updated.sql';
$node->command_ok(['pg_dump', '-f', $plain, '-d', 'updated'], 'updated: pg_dump (plain)');
restore('updated_restored', 'psql', '-X', '-q', '--single-transaction', '-v', 'ON_ERROR_STOP=1',
	'-f', $plain, '-d', 'updated_restored');
check_round_trip('updated', 'updated_restored', 'b', "email 100 1000\npush 50 100\nsms 2.5 20");

$node->stop;
done_testing();
