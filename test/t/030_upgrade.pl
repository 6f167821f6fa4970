# The upgrade path from 1.0 to 1.1, on a database that is running.
#
# A database is created at version 1.0 (the frozen install script) and
# loaded through the 1.0 API with a scenario in every state: waiting,
# offered, accepted, declined, expired, cancelled and failed entries; open
# offers; outbox rows pending, leased, delivered and dead-lettered; pending
# capacity events; a changed channel rate; a resource held back by waves.
# The new library serves it as it is, inline and in worker mode.  Then
# ALTER EXTENSION waitlist UPDATE, and:
#   (a) its catalog equals that of a fresh 1.1 install in another database,
#   (b) no row was lost and waitlist_check() is empty,
#   (c) the scenario goes on: pending events are folded by the worker,
#       offers are accepted and expire, fans join and leave, capacity is
#       released.
#
# Pending capacity events: a worker-mode release leaves its event PENDING
# for the worker that serves the database.  With max_worker_processes = 0
# the worker is configured but cannot start, so the events stay pending
# across the update until a restart gives the worker its slot.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'waitlist'
waitlist.database = 'up'
waitlist.naptime = '200ms'
max_worker_processes = 0
});
$node->start;

sub up { return $node->safe_psql('up', $_[0]); }
sub fresh { return $node->safe_psql('fresh', $_[0]); }

sub up_until
{
	my ($query, $expected, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ok($node->poll_query_until('up', $query, $expected), $what);
	return;
}

# Give the worker a slot (or take it away) and restart.
sub worker_slots
{
	my ($n) = @_;
	$node->append_conf('postgresql.conf', "max_worker_processes = $n\n");
	$node->restart;
	return;
}

$node->safe_psql('postgres', 'CREATE DATABASE up');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

# --- a 1.0 database, loaded through the 1.0 API ----------------------------

up("CREATE EXTENSION waitlist VERSION '1.0'");
is(up("SELECT extversion FROM pg_extension WHERE extname = 'waitlist'"),
	'1.0', 'the database is at version 1.0');

my $book_seat = q{CREATE FUNCTION public.book_seat(resource_id text, user_id text, offer_id bigint, key text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF user_id LIKE 'nobook%' THEN
        RAISE EXCEPTION 'seat gone' USING ERRCODE = 'WL004';
    END IF;
    RETURN 'ref-' || offer_id;
END;
$$};
up($book_seat);

up(q{SELECT waitlist_create_resource('concert', '1 hour', channels => '{webhook,sms}');
SELECT waitlist_create_resource('booked', '1 hour', booking_function => 'public.book_seat(text, text, bigint, text)');
SELECT waitlist_create_resource('expiring', '2 seconds');
SELECT waitlist_create_resource('waves', '1 hour', wave_size => 1, wave_interval => '1 hour');
SELECT waitlist_set_channel_rate('sms', 5, 10);});

# concert: ten fans, five units; one accepts, one declines, one leaves
# while offered, one leaves while waiting
up( "SELECT waitlist_join('concert', 'fan-' || g, CASE WHEN g = 9 THEN 5 ELSE 0 END)"
	  . " FROM generate_series(1, 10) g");
up("SELECT waitlist_release('concert', 5, 'cancel-1')");
sub offer_of
{
	my ($db, $resource, $user) = @_;
	return $node->safe_psql($db,
		"SELECT o.offer_id FROM waitlist.offer o JOIN waitlist.entry e USING (resource_id, entry_id)"
		  . " WHERE o.resource_id = '$resource' AND e.user_id = '$user' AND o.state = 'OPEN'");
}
sub entry_of
{
	my ($db, $resource, $user) = @_;
	return $node->safe_psql($db,
		"SELECT max(entry_id) FROM waitlist.entry WHERE resource_id = '$resource' AND user_id = '$user'");
}
my $o1 = offer_of('up', 'concert', 'fan-1');
is(up("SELECT state FROM waitlist_accept($o1, 'key-1')"), 'ACCEPTED', 'fan-1 accepts');
is(up("SELECT waitlist_decline(" . offer_of('up', 'concert', 'fan-2') . ")"),
	't', 'fan-2 declines');
is(up("SELECT waitlist_leave(" . entry_of('up', 'concert', 'fan-3') . ")"),
	't', 'fan-3 leaves while offered');
is(up("SELECT waitlist_leave(" . entry_of('up', 'concert', 'fan-10') . ")"),
	't', 'fan-10 leaves while waiting');
up("SELECT waitlist_offer_seen(" . offer_of('up', 'concert', 'fan-4') . ")");

# booked: one booking succeeds, one fails (the offer FAILED, the fan waits again)
up("SELECT waitlist_join('booked', u) FROM unnest(ARRAY['nobook-1', 'book-2', 'book-3']) u");
up("SELECT waitlist_release('booked', 2, 'cancel-2')");
is(up("SELECT state FROM waitlist_accept(" . offer_of('up', 'booked', 'nobook-1') . ", 'k')"),
	'FAILED', 'a booking that fails');
my $ob2 = offer_of('up', 'booked', 'book-2');
is(up("SELECT state || ' ' || reservation_ref FROM waitlist_accept($ob2, 'k')"),
	"ACCEPTED ref-$ob2", 'a booking that succeeds');

# expiring: two offers expire, the next fan gets one
up("SELECT waitlist_join('expiring', 'late-' || g) FROM generate_series(1, 3) g");
up("SELECT waitlist_release('expiring', 2, 'cancel-3')");
up_until(
	"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'expiring' AND expires_at < now()",
	'2', 'the first two offers are past their deadline');
is(up('SELECT waitlist_sweep()'), '2', 'the sweep expires them');

# waves: three units, one offer per hour
up("SELECT waitlist_join('waves', 'w-' || g) FROM generate_series(1, 3) g");
up("SELECT waitlist_release('waves', 3, 'cancel-4')");

# a relay: three webhook rows leased, one delivered, one dead-lettered
my $claimed = up(
	q{SELECT string_agg(outbox_id || ':' || lease_token, ' ' ORDER BY outbox_id)
FROM waitlist_outbox_claim('relay-a', 3, '1 hour', '{webhook}')});
my @leases = map { [ split /:/ ] } split / /, $claimed;
is(scalar(@leases), 3, 'the relay leases three rows');
up("SELECT waitlist_outbox_ack($leases[0][0], $leases[0][1])");
up( "SET waitlist.outbox_max_attempts = 1;"
	  . " SELECT waitlist_outbox_fail($leases[1][0], $leases[1][1], 'receiver said 410')");

# pending capacity events: worker mode, and no worker can start yet
up( "SET waitlist.promotion_mode = worker;"
	  . " SELECT waitlist_release('concert', 2, 'pending-1')");
is(up("SELECT state FROM waitlist.capacity_event WHERE event_id = 'pending-1'"),
	'PENDING', 'a worker-mode release leaves its event pending');

is( up(
		q{SELECT string_agg(state, ',' ORDER BY state) FROM (SELECT DISTINCT state FROM waitlist.entry) s}),
	'ACCEPTED,CANCELLED,DECLINED,EXPIRED,OFFERED,WAITING',
	'entries in every state');
is( up(
		q{SELECT string_agg(state, ',' ORDER BY state) FROM (SELECT DISTINCT state FROM waitlist.offer) s}),
	'ACCEPTED,DECLINED,EXPIRED,FAILED,OPEN,REVOKED',
	'offers in every state');
is(up('SELECT count(*) FROM waitlist_check()'), '0',
	'waitlist_check() is empty on the 1.0 database');
# the 1.0 schema still has its statement triggers: the engine writes the
# rows of its own statements, the triggers only those of changes by hand
is( up(
		q{SELECT count(*) FROM (SELECT 1 FROM waitlist.transition
  GROUP BY resource_id, entity, entity_id, from_state, to_state, transaction_id
  HAVING count(*) > 1) twice}),
	'0',
	'on the 1.0 database every change is logged once');
up("UPDATE waitlist.entry SET priority = priority WHERE resource_id = 'concert'");
is(up(q{SELECT count(*) FROM waitlist.transition WHERE reason = 'manual'}), '0',
	'an UPDATE by hand that changes no state logs nothing');

# --- the new library serves the 1.0 database in worker mode ------------------

worker_slots(8);
up_until(
	"SELECT state FROM waitlist.capacity_event WHERE event_id = 'pending-1'",
	'PROCESSED', 'the worker folds the pending event on the 1.0 database');
up( "SET waitlist.promotion_mode = worker;"
	  . " SELECT waitlist_release('concert', 1, 'worker-1')");
up_until(
	"SELECT state FROM waitlist.capacity_event WHERE event_id = 'worker-1'",
	'PROCESSED', 'and a worker-mode release made on it');
up_until(
	"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'expiring' AND state = 'EXPIRED'",
	'3', 'the worker expires the due offer of the 1.0 database');
ok(up('SELECT sum(events_processed) FROM waitlist_worker_status()') >= 2,
	'waitlist_worker_status() counts the events');
is(up('SELECT count(*) FROM waitlist_check()'), '0',
	'waitlist_check() is still empty');

# more pending events, left for after the update
worker_slots(0);
up( "SET waitlist.promotion_mode = worker;"
	  . " SELECT waitlist_release('concert', 1, 'pending-2')");
is(up("SELECT state FROM waitlist.capacity_event WHERE event_id = 'pending-2'"),
	'PENDING', 'a pending event waits through the update');

# a DBA's EXECUTE grants on functions whose signature 1.1 changes
up(q{CREATE ROLE upgrade_dba;
GRANT USAGE ON SCHEMA waitlist TO upgrade_dba;
GRANT EXECUTE ON FUNCTION waitlist_create_resource(text, interval, bigint, regprocedure, text[], integer, interval),
    waitlist_alter_resource(text, interval, bigint, boolean, regprocedure, boolean, text[], integer, interval, boolean),
    waitlist_status(bigint), waitlist_worker_status() TO upgrade_dba;});

# --- the update ---------------------------------------------------------------

my $count_query = q{
SELECT string_agg(format('%s=%s', c.relname,
                         (xpath('/row/n/text()',
                                query_to_xml(format('SELECT count(*) AS n FROM waitlist.%I', c.relname),
                                             false, true, '')))[1]::text), ' ' ORDER BY c.relname)
FROM pg_class c
WHERE c.relnamespace = 'waitlist'::regnamespace AND c.relkind = 'r'};
my $counts_before = up($count_query);
my $leases_before = up(
	q{SELECT count(*) FROM waitlist.outbox WHERE lease_expires_at > now() AND state = 'PENDING'});
is($leases_before, '1', 'one lease is still held');

up('ALTER EXTENSION waitlist UPDATE');
is(up("SELECT extversion FROM pg_extension WHERE extname = 'waitlist'"),
	'1.1', 'the database is at version 1.1');

# the functions made again keep the grants DBAs gave, and PUBLIC has none
is( up(q{SELECT string_agg(has_function_privilege('upgrade_dba', p.oid, 'EXECUTE')::text, ',' ORDER BY p.proname)
           FROM pg_proc p
          WHERE p.proname IN ('waitlist_create_resource', 'waitlist_alter_resource',
                              'waitlist_status', 'waitlist_worker_status')}),
	'true,true,true,true', 'the EXECUTE grants on the functions 1.1 makes again are kept');
is( up(q{SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a
          WHERE p.proname IN ('waitlist_create_resource', 'waitlist_alter_resource',
                              'waitlist_status', 'waitlist_worker_status')
            AND a.grantee = 0}),
	'0', '... and PUBLIC has none');
is(up("SELECT count(*) FROM pg_proc WHERE proname IN ('execute_grantees', 'grant_execute')"),
	'0', 'the helpers of the update are gone');
# (the catalog comparison below is with a fresh install, which has no DBA)
up('DROP OWNED BY upgrade_dba; DROP ROLE upgrade_dba');

# (b) nothing lost
my %after = map { split /=/ } split / /, up($count_query);
my %before = map { split /=/ } split / /, $counts_before;
# the update adds one channel, that of the booking service
my %expected = (%before, channel => $before{channel} + 1);
is_deeply({ map { $_ => $after{$_} } keys %before },
	\%expected, "every table of 1.0 kept its rows ($counts_before), and channel has 'booking'");
is( up(
		q{SELECT count(*) FROM waitlist.outbox WHERE lease_expires_at > now() AND state = 'PENDING'}),
	$leases_before, 'the lease survives');
is(up("SELECT state FROM waitlist.capacity_event WHERE event_id = 'pending-2'"),
	'PENDING', 'the pending event is still pending');
is(up('SELECT count(*) FROM waitlist_check()'), '0',
	'waitlist_check() is empty after the update');

# (a) the catalog of the updated database equals a fresh 1.1 install
fresh('CREATE EXTENSION waitlist');
# the user's own function, so that pg_dump finds the same in both
fresh($book_seat);
is(fresh("SELECT extversion FROM pg_extension WHERE extname = 'waitlist'"),
	'1.1', 'the fresh database is at version 1.1');

# One line per property of each object of the extension, named without
# OIDs: members, function definitions, columns, constraints, indexes,
# triggers, views, sequences, privileges (and initial privileges),
# comments, dump configuration, row security, rules.
my $catalog_query = q{
WITH ext AS (SELECT * FROM pg_extension WHERE extname = 'waitlist'),
members AS (
    SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
    SELECT c.* FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid)
SELECT line FROM (
    SELECT format('extension version=%s relocatable=%s schema=%s config=%s condition=%s',
                  e.extversion, e.extrelocatable, e.extnamespace::regnamespace,
                  (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM unnest(e.extconfig) c),
                  (SELECT array_agg(x ORDER BY x) FROM unnest(e.extcondition) x)) AS line
    FROM ext e
    UNION ALL
    SELECT format('member %s %s', o.type, o.identity)
    FROM members m, pg_identify_object(m.classid, m.objid, m.objsubid) o
    UNION ALL
    SELECT format('function %s owner=%s acl=%s comment=%s def=%s', p.oid::regprocedure, p.proowner::regrole,
                  p.proacl, obj_description(p.oid, 'pg_proc'),
                  CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END)
    FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    UNION ALL
    SELECT format('relation %s kind=%s persistence=%s options=%s acl=%s owner=%s rls=%s/%s comment=%s',
                  c.oid::regclass, c.relkind, c.relpersistence, c.reloptions, c.relacl, c.relowner::regrole,
                  c.relrowsecurity, c.relforcerowsecurity, obj_description(c.oid, 'pg_class'))
    FROM rels c
    UNION ALL
    SELECT format('column %s.%s #%s %s notnull=%s default=%s identity=%s generated=%s acl=%s comment=%s',
                  c.oid::regclass, a.attname, a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated, a.attacl,
                  col_description(c.oid, a.attnum))
    FROM rels c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT format('constraint %s.%s %s deferrable=%s validated=%s', c.oid::regclass, k.conname,
                  pg_get_constraintdef(k.oid), k.condeferrable, k.convalidated)
    FROM rels c JOIN pg_constraint k ON k.conrelid = c.oid
    UNION ALL
    SELECT format('index %s %s valid=%s', i.indexrelid::regclass, pg_get_indexdef(i.indexrelid), i.indisvalid)
    FROM rels c JOIN pg_index i ON i.indrelid = c.oid
    UNION ALL
    SELECT format('trigger %s.%s %s enabled=%s', c.oid::regclass, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled)
    FROM rels c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT format('view %s %s', c.oid::regclass, pg_get_viewdef(c.oid))
    FROM rels c WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('sequence %s %s start=%s increment=%s min=%s max=%s cache=%s cycle=%s',
                  s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                  s.seqcache, s.seqcycle)
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
    WHERE c.relnamespace IN (SELECT r.relnamespace FROM rels r)
    UNION ALL
    SELECT format('policy %s.%s %s', c.oid::regclass, p.polname, pg_get_expr(p.polqual, p.polrelid))
    FROM rels c JOIN pg_policy p ON p.polrelid = c.oid
    UNION ALL
    SELECT format('rule %s.%s %s', c.oid::regclass, r.rulename, pg_get_ruledef(r.oid))
    FROM rels c JOIN pg_rewrite r ON r.ev_class = c.oid
    UNION ALL
    SELECT format('event trigger %s on %s tags=%s enabled=%s function=%s', t.evtname, t.evtevent, t.evttags,
                  t.evtenabled, t.evtfoid::regprocedure)
    FROM pg_event_trigger t JOIN members m ON m.classid = 'pg_event_trigger'::regclass AND m.objid = t.oid
    UNION ALL
    SELECT format('schema %s owner=%s acl=%s comment=%s', n.nspname, n.nspowner::regrole, n.nspacl,
                  obj_description(n.oid, 'pg_namespace'))
    FROM pg_namespace n
    WHERE n.oid IN (SELECT m.objid FROM members m WHERE m.classid = 'pg_namespace'::regclass)
       OR n.oid IN (SELECT r.relnamespace FROM rels r)
    UNION ALL
    SELECT format('init privs %s %s %s', o.type, o.identity, i.initprivs)
    FROM pg_init_privs i, pg_identify_object(i.classoid, i.objoid, i.objsubid) o
    WHERE (i.classoid, i.objoid) IN (SELECT m.classid, m.objid FROM members m)
) l
ORDER BY line};
my @up_catalog = split /\n/, up($catalog_query);
my @fresh_catalog = split /\n/, fresh($catalog_query);
my %in_fresh = map { $_ => 1 } @fresh_catalog;
my %in_up = map { $_ => 1 } @up_catalog;
my @only_up = grep { !$in_fresh{$_} } @up_catalog;
my @only_fresh = grep { !$in_up{$_} } @fresh_catalog;
ok(@up_catalog > 100, 'the catalog description covers the extension (' . scalar(@up_catalog) . ' lines)');
ok(!@only_up && !@only_fresh, 'the updated catalog equals a fresh 1.1 install')
  or diag(join("\n", (map { "only after the update: $_" } @only_up),
		(map { "only in the fresh install: $_" } @only_fresh)));

# pg_dump sees the two databases alike too
my @dump = map {
	my ($stdout, $stderr);
	IPC::Run::run([ 'pg_dump', '--schema-only', '-d', $node->connstr($_) ], '>', \$stdout, '2>', \$stderr)
	  or die "pg_dump $_: $stderr";
	$stdout =~ s/^--.*$//mg;
	# pg_dump's per-run random key for psql's \restrict
	$stdout =~ s/^\\(un)?restrict .*$//mg;
	$stdout =~ s/\n{2,}/\n/g;
	$stdout;
} ('up', 'fresh');
my %dump_lines = map { $_ => 1 } split /\n/, $dump[1];
my @dump_diff = grep { !$dump_lines{$_} } split /\n/, $dump[0];
%dump_lines = map { $_ => 1 } split /\n/, $dump[0];
push @dump_diff, map { "fresh: $_" } grep { !$dump_lines{$_} } split /\n/, $dump[1];
ok($dump[0] eq $dump[1], 'pg_dump --schema-only of both databases is the same')
  or diag(join("\n", @dump_diff));

# --- (c) the scenario goes on on the updated schema ---------------------------

worker_slots(8);
up_until(
	"SELECT state FROM waitlist.capacity_event WHERE event_id = 'pending-2'",
	'PROCESSED', 'the worker folds the event left pending across the update');

my $o4 = offer_of('up', 'concert', 'fan-4');
is(up("SELECT state FROM waitlist_accept($o4, 'key-4')"), 'ACCEPTED',
	'an offer made on 1.0 is accepted on 1.1');
is(up("SELECT state FROM waitlist_accept($o1, 'key-1')"), 'ACCEPTED',
	'an accept repeated with its 1.0 idempotency key answers as before');
is(up("SELECT bool_or(payload ? 'token') FROM waitlist.outbox WHERE offer_id = $o4 AND event_type = 'offer_created'"),
	'f', 'an offer made on 1.0 was announced without a token');
is(up("SELECT state FROM waitlist_accept_token(waitlist_offer_token($o4), 'key-4')"), 'ACCEPTED',
	'it has a token on 1.1, which verifies and answers as its accept did');
my $o5 = offer_of('up', 'concert', 'fan-5');
is(up("SELECT waitlist_decline($o5)"), 't', 'an offer made on 1.0 is declined on 1.1');
up("SELECT waitlist_join('concert', 'fan-' || g) FROM generate_series(11, 14) g");
is(up("SELECT waitlist_leave(" . entry_of('up', 'concert', 'fan-8') . ")"), 't',
	'a fan who joined on 1.0 leaves on 1.1');
up("SELECT waitlist_release('concert', 2, 'cancel-5')");
is( up(
		"SELECT count(*) FROM waitlist.entry WHERE resource_id = 'concert'"
		  . " AND user_id IN ('fan-11', 'fan-12', 'fan-13', 'fan-14') AND state = 'OFFERED'"),
	'4', 'the fans who joined on 1.1 get the units freed on 1.0 and released on 1.1');
is( up(
		"SELECT bool_and(b.payload->>'token' = waitlist_offer_token(b.offer_id)) FROM waitlist.outbox b"
		  . " WHERE b.event_type = 'offer_created' AND b.user_id IN ('fan-11', 'fan-12', 'fan-13', 'fan-14')"),
	't', 'their offers are announced with their tokens');
is( up(
		"SELECT waitlist_decline_token(b.payload->>'token') FROM waitlist.outbox b"
		  . " WHERE b.event_type = 'offer_created' AND b.user_id = 'fan-14' LIMIT 1"),
	't', 'and a token of the updated database declines its offer');

up("SELECT waitlist_join('expiring', 'late-' || g) FROM generate_series(4, 5) g");
up_until(
	"SELECT count(*) FROM waitlist.offer WHERE resource_id = 'expiring' AND state = 'EXPIRED'",
	'5', 'offers made on 1.1 expire');

up("SELECT waitlist_release('booked', 2, 'cancel-6')");
my $ob3 = offer_of('up', 'booked', 'book-3');
is(up("SELECT state || ' ' || reservation_ref FROM waitlist_accept($ob3, 'k')"),
	"ACCEPTED ref-$ob3", 'the booking function of a 1.0 resource still books');

# relays carry on with the leases they held
is(up("SELECT waitlist_outbox_ack($leases[2][0], $leases[2][1])"), 't',
	'a lease taken on 1.0 is acked on 1.1');
is(up("SELECT waitlist_outbox_retry($leases[1][0])"), 't',
	'a row dead-lettered on 1.0 is retried on 1.1');
ok(up(q{SELECT count(*) FROM waitlist_outbox_claim('relay-b', 100, '1 minute')}) > 0,
	'and a relay claims the rest');
is(up("SELECT rate_per_second || '/' || burst FROM waitlist.channel WHERE channel = 'sms'"),
	'5/10', 'the channel rate set on 1.0 holds');

like(up('SELECT waitlist_metrics()'),
	qr/^waitlist_worker_events_processed_total\{worker="0"\} [1-9]/m,
	'the metrics of the updated database carry the worker counters');
up_until('SELECT count(*) FROM waitlist_check()', '0',
	'waitlist_check() is empty once the worker is done');

$node->stop;
done_testing();
