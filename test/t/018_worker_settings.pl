# A database owner, who need not be a superuser, can set defaults for every
# session of the database with ALTER DATABASE ... SET, and the promotion
# workers apply them when they connect (BackgroundWorkerInitializeConnection
# runs process_settings like any backend).  default_transaction_read_only,
# statement_timeout, lock_timeout or default_transaction_isolation set that
# way would stop or distort every worker round for every resource, so the
# worker overrides them for its whole life (src/worker.c).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = worker_node(
	'worker_settings', qq{
waitlist.naptime = '200ms'
});

# the database's owner makes every new session read-only by default
sql('CREATE ROLE regress_db_owner');
sql('ALTER DATABASE postgres OWNER TO regress_db_owner');
sql('SET ROLE regress_db_owner; ALTER DATABASE postgres SET default_transaction_read_only = on');
# the workers reconnect with that default
sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'");
wait_until(
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'waitlist worker'",
	'1', 'the worker is back');

my $entry = sql(
	"SET default_transaction_read_only = off;"
	  . " SELECT waitlist_create_resource('r', '1 hour');"
	  . " SELECT waitlist_join('r', 'fan-1');");
($entry) = reverse split /\n/, $entry;
sql("SET default_transaction_read_only = off; SELECT waitlist_release('r', 1, 'ev-1')");
wait_until(entry_state($entry), 'OFFERED',
	'the worker still promotes whatever defaults the database sets');

$node->stop;
done_testing();
