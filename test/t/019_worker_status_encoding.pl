# A worker keeps its last error in shared memory, cut to 255 bytes.  An
# error message holding a resource id or user data of multibyte characters
# (ids may be 200 bytes of them) must be cut on a character boundary, or
# waitlist_worker_status() returns a text value that is not valid in the
# database encoding and clients fail on it (src/shmem.c).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use WaitlistTest;

my $node = worker_node(
	'worker_status_encoding', qq{
waitlist.naptime = '200ms'
});
is(sql('SHOW server_encoding'), 'UTF8', 'the database is UTF8');

# every offer of this resource fails, with a long message of two-byte
# characters after a two-byte prefix: 255 bytes end inside a character
sql(q{CREATE FUNCTION public.refuse_offer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'xy%', pg_catalog.repeat(pg_catalog.chr(233), 200);
END $$;
CREATE TRIGGER refuse_offer AFTER INSERT ON waitlist.offer
  FOR EACH ROW EXECUTE FUNCTION public.refuse_offer();});
sql("SELECT waitlist_create_resource('r', '1 hour')");
sql("SELECT waitlist_join('r', 'fan-1')");
sql("SELECT waitlist_release('r', 1, 'ev-1')");
wait_until("SELECT count(*) FROM waitlist_worker_status() WHERE last_error IS NOT NULL",
	'1', 'the worker reports the error');

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT pg_catalog.convert_from(pg_catalog.convert_to(last_error, 'UTF8'), 'UTF8')"
	  . " OPERATOR(pg_catalog.=) last_error FROM waitlist_worker_status()"
	  . " WHERE last_error IS NOT NULL");
is($stdout, 't', 'the last error is valid UTF8') or diag($stderr);

$node->stop;
done_testing();
