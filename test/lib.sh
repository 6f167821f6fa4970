# test/lib.sh: shared by test/run and demo/run (source it, do not run it).
#
# Installs the packages, builds and installs the extension from a private copy
# of the source tree, and starts and stops throwaway PostgreSQL clusters.
# Everything lives in one temporary directory (WL_TMP) that an EXIT trap
# removes after stopping every server started under it.

# WL_PG_BINDIR points the tests at another (relocated) PostgreSQL 15
# installation, so that two checkouts can be tested at once without sharing
# the installed extension.
PG_BINDIR=${WL_PG_BINDIR:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PG_BINDIR/pg_config
export PG_CONFIG

# Debian packages needed to build the extension and run every suite.
WL_PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	postgresql-15-cron
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	make
	gcc
	libc6-dev
	libpq-dev
	libcurl4-openssl-dev
	libssl-dev
	libmicrohttpd-dev
	libjansson-dev
	libjwt-dev
	curl
	openssl
	chromium
	chromium-driver
)

# Connection settings from the caller's environment must not point our
# tools at some other server.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGDATA

WL_TMP=
WL_PGDATA=
WL_SOCKDIR=

wl_log() {
	printf '==> %s\n' "$*"
}

wl_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

wl_is_root() {
	[ "$(id -u)" -eq 0 ]
}

# Run a command as the user that owns the servers: postgres when we are root
# (initdb and postgres refuse to run as root), ourselves otherwise.
wl_as_pg() {
	if wl_is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

wl_missing_packages() {
	local pkg
	for pkg in "${WL_PACKAGES[@]}"; do
		if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
			printf '%s\n' "$pkg"
		fi
	done
}

# As root, install whatever is missing from Debian's registry.  Otherwise
# the packages must already be there.
wl_install_packages() {
	local missing
	missing=$(wl_missing_packages | tr '\n' ' ')
	if [ -z "$missing" ]; then
		return 0
	fi
	if ! wl_is_root; then
		wl_die "missing packages: $missing(install them as root, or run this as root)"
	fi
	wl_log "installing packages: $missing"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get update -q >"$WL_TMP/apt.log" 2>&1 ||
		! apt-get install -y -q "${WL_PACKAGES[@]}" >>"$WL_TMP/apt.log" 2>&1; then
		tail -n 40 "$WL_TMP/apt.log" >&2
		wl_die "package installation failed"
	fi
}

# Stop every server whose data directory lies under WL_TMP (ours, and any
# that pg_regress or a TAP test left behind after an interruption), then
# remove WL_TMP.
wl_cleanup() {
	local rc=$? pidfile datadir
	trap - EXIT INT TERM
	if [ -n "$WL_TMP" ] && [ -d "$WL_TMP" ]; then
		while IFS= read -r pidfile; do
			datadir=$(dirname "$pidfile")
			wl_as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" -m fast -w -t 30 stop >/dev/null 2>&1 ||
				wl_as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
				echo "warning: could not stop the server in $datadir" >&2
		done < <(find "$WL_TMP" -name postmaster.pid -type f 2>/dev/null)
		rm -rf "$WL_TMP"
	fi
	exit "$rc"
}

# Create WL_TMP and arrange for it to be cleaned up however we exit.
wl_make_workdir() {
	WL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/waitlist.XXXXXX") || wl_die "mktemp failed"
	chmod 755 "$WL_TMP"
	trap wl_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# Copy the source tree (without git metadata and build or test output) to
# WL_TMP/src: the clone may sit in a directory the postgres user cannot
# enter, and pg_regress and TAP write into the tree they run in.
wl_copy_tree() {
	local from=$1
	mkdir "$WL_TMP/src"
	tar -C "$from" -cf - \
		--exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude='./tmp_check*' --exclude=./results --exclude=./output_iso \
		--exclude=./regression.diffs --exclude=./regression.out --exclude=./log \
		. | tar -C "$WL_TMP/src" -xf - || wl_die "copying the source tree failed"
}

# Build the extension in WL_TMP/src and install it.  Installing writes into
# the PostgreSQL installation: as root that just works; otherwise the
# directories must be writable, or sudo must work without a password.
wl_build_install() {
	local log=$WL_TMP/build.log install=(make)
	wl_log "building and installing the extension"
	if ! wl_is_root &&
		! { [ -w "$("$PG_CONFIG" --pkglibdir)" ] && [ -w "$("$PG_CONFIG" --sharedir)/extension" ]; }; then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			install=(sudo -n make)
		else
			echo "error: cannot install into $("$PG_CONFIG" --pkglibdir): run as root" >&2
			return 1
		fi
	fi
	if ! make -C "$WL_TMP/src" -j2 PG_CONFIG="$PG_CONFIG" >"$log" 2>&1 ||
		! "${install[@]}" -C "$WL_TMP/src" install PG_CONFIG="$PG_CONFIG" >>"$log" 2>&1; then
		cat "$log" >&2
		echo "error: building or installing the extension failed" >&2
		return 1
	fi
}

# Hand WL_TMP over to the user that runs the servers.
wl_chown_workdir() {
	if wl_is_root; then
		chown -R postgres:postgres "$WL_TMP"
	fi
}

# A TCP port nobody listens on (the clusters listen on a unix socket only,
# but the port also names the socket and must not clash).
wl_free_port() {
	local port used='' _sl local_addr _rem state _rest
	while read -r _sl local_addr _rem state _rest; do
		[ "$state" = 0A ] && used+=" $((16#${local_addr##*:})) "
	done < <(tail -q -n +2 /proc/net/tcp /proc/net/tcp6 2>/dev/null)
	for _ in $(seq 1 100); do
		port=$((20000 + RANDOM % 40000))
		if [[ $used != *" $port "* ]] &&
			[ ! -e "/tmp/.s.PGSQL.$port" ] && [ ! -e "/var/run/postgresql/.s.PGSQL.$port" ]; then
			echo "$port"
			return 0
		fi
	done
	echo "error: no free port found" >&2
	return 1
}

# The libraries the throwaway servers preload: the same as pg_regress's
# (test/regress.conf), so that every suite and the demo agree.
wl_preload_libraries() {
	local conf=$WL_TMP/src/test/regress.conf libs=
	if [ -f "$conf" ]; then
		libs=$(sed -n "s/^[[:space:]]*shared_preload_libraries[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$conf" | tail -n 1)
	fi
	echo "${libs:-pg_cron}"
}

# wl_cluster_start DBNAME: initdb a cluster under WL_TMP that preloads what
# test/regress.conf preloads (pg_cron), create DBNAME before pg_cron's
# launcher looks for it, start the server on a unix socket in WL_TMP, and
# export PGHOST/PGPORT/PGDATABASE for psql and pg_prove.  Returns non-zero
# on failure (the EXIT trap stops whatever did start).
wl_cluster_start() {
	local db=$1 port preload
	port=$(wl_free_port) || return 1
	preload=$(wl_preload_libraries)
	WL_PGDATA=$WL_TMP/data
	WL_SOCKDIR=$WL_TMP/sock
	rm -rf "$WL_PGDATA" "$WL_SOCKDIR"
	wl_as_pg mkdir -p "$WL_SOCKDIR" || return 1
	if ! wl_as_pg "$PG_BINDIR/initdb" -D "$WL_PGDATA" -A trust -E UTF8 --locale=C --no-sync \
		>"$WL_TMP/initdb.log" 2>&1; then
		cat "$WL_TMP/initdb.log" >&2
		echo "error: initdb failed" >&2
		return 1
	fi
	cat >>"$WL_PGDATA/postgresql.conf" <<-EOF

		# throwaway cluster
		listen_addresses = ''
		port = $port
		unix_socket_directories = '$WL_SOCKDIR'
		shared_preload_libraries = '$preload'
		cron.database_name = '$db'
		cron.use_background_workers = on
		max_worker_processes = 16
		fsync = off
	EOF
	# when preloaded, the extension's promotion workers serve the same database
	if [[ ,${preload// /}, == *,waitlist,* ]]; then
		echo "waitlist.database = '$db'" >>"$WL_PGDATA/postgresql.conf"
	fi
	if ! echo "CREATE DATABASE \"$db\"" |
		wl_as_pg "$PG_BINDIR/postgres" --single -D "$WL_PGDATA" postgres >"$WL_TMP/single.log" 2>&1; then
		cat "$WL_TMP/single.log" >&2
		echo "error: CREATE DATABASE $db failed" >&2
		return 1
	fi
	if ! wl_as_pg "$PG_BINDIR/pg_ctl" -D "$WL_PGDATA" -l "$WL_TMP/server.log" -w -t 60 start >/dev/null; then
		cat "$WL_TMP/server.log" >&2
		echo "error: the server did not start" >&2
		return 1
	fi
	export PGHOST=$WL_SOCKDIR PGPORT=$port PGDATABASE=$db
	wl_psql -c 'SELECT 1' >/dev/null || { cat "$WL_TMP/single.log" >&2; return 1; }
}

wl_cluster_stop() {
	if [ -n "$WL_PGDATA" ] && [ -f "$WL_PGDATA/postmaster.pid" ]; then
		wl_as_pg "$PG_BINDIR/pg_ctl" -D "$WL_PGDATA" -m fast -w -t 60 stop >/dev/null
	fi
	unset PGHOST PGPORT PGDATABASE
}

wl_psql() {
	wl_as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}
