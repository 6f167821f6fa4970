# Makefile for the waitlist extension (PGXS)

EXTENSION = waitlist
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = waitlist
# One layer per header, each depending only on those below it (test/lint/layers):
# shmem, api (and booking), store, engine (transition, promote), then the
# SQL entry points and the worker.
OBJS = \
	src/shmem.o \
	src/api.o \
	src/shards.o \
	src/booking.o \
	src/store.o \
	src/token.o \
	src/autonomous.o \
	src/forward.o \
	src/transition.o \
	src/promote.o \
	src/entry.o \
	src/offer.o \
	src/lookup.o \
	src/release.o \
	src/resource.o \
	src/capacity.o \
	src/outbox.o \
	src/guard.o \
	src/cron.o \
	src/archive.o \
	src/distribute.o \
	src/worker.o \
	src/waitlist.o

# A fresh install runs one full script, made from the frozen 1.0 script and
# the upgrade script behind a guard only a fresh install needs: a fresh 1.1
# and an updated 1.0 are built by the same statements, by two paths that
# test/t/030_upgrade.pl compares.
FULL_SCRIPT = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(FULL_SCRIPT),$(wildcard sql/$(EXTENSION)--*.sql))
DATA_built = $(FULL_SCRIPT)

# pg_regress inputs live in sql/, expected outputs in expected/, as in pg_cron.
# Every suite runs against its own throwaway server with the libraries
# preloaded (test/regress.conf), never against a server the caller started.
REGRESS = $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf --temp-instance=./tmp_check_regress \
	--load-extension=$(EXTENSION)

ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=$(srcdir)/test --temp-config=$(srcdir)/test/regress.conf \
	--temp-instance=./tmp_check_iso --load-extension=$(EXTENSION)

TAP_TESTS := $(if $(wildcard test/t/*.pl),1,)
PROVE_TESTS = test/t/*.pl

PG_CPPFLAGS = -DWAITLIST_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror

EXTRA_CLEAN = tmp_check_regress tmp_check_iso results output_iso regression.diffs regression.out

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: pgtap
# pgTAP contract tests; needs a running server (PGHOST/PGPORT) with the
# extension installable, see test/run.
pgtap:
	pg_prove --ext .sql -d $${PGDATABASE:-postgres} test/pgtap/

$(FULL_SCRIPT): sql/install-guard.sql.in sql/$(EXTENSION)--1.0.sql sql/$(EXTENSION)--1.0--$(EXTVERSION).sql
	{ echo '/* $(notdir $@): made by make from $(notdir $^); edit those */'; \
	  for f in $^; do echo; cat $$f; done; } > $@

# every object depends on the headers (PGXS tracks no header dependencies)
$(OBJS): $(wildcard src/*.h)

.PHONY: bench
# Benchmarks on a throwaway cluster (bench/README.md): `make bench`, or
# `make bench BENCH_ARGS=--quick` for the short run.
bench:
	bench/run $(BENCH_ARGS)

# waitlist-relay (relay/waitlist-relay.c): delivers the outbox to a webhook.
# Built with the extension and installed beside the server's programs; needs
# libpq, libcurl and OpenSSL's libcrypto (for the HMAC signature).
RELAY = relay/waitlist-relay
RELAY_CFLAGS = -std=c99 -O2 -g -Wall -Wextra -Werror
RELAY_CPPFLAGS = -I$(shell $(PG_CONFIG) --includedir)
RELAY_LIBS = -L$(shell $(PG_CONFIG) --libdir) -lpq -lcurl -lcrypto

all: $(RELAY)

$(RELAY): relay/waitlist-relay.c
	$(CC) $(RELAY_CFLAGS) $(RELAY_CPPFLAGS) -o $@ $< $(RELAY_LIBS)

.PHONY: install-relay uninstall-relay
install: install-relay
uninstall: uninstall-relay

install-relay: $(RELAY)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(RELAY) '$(DESTDIR)$(bindir)/waitlist-relay'

uninstall-relay:
	rm -f '$(DESTDIR)$(bindir)/waitlist-relay'

EXTRA_CLEAN += $(RELAY)

# waitlist-gateway (gateway/*.c): the HTTP API and the fans' offer page.
# Built and installed beside the relay; needs libpq, libmicrohttpd, jansson
# and libjwt.
GATEWAY = gateway/waitlist-gateway
GATEWAY_SRCS = $(wildcard gateway/*.c)
GATEWAY_CFLAGS = -std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror -pthread
GATEWAY_LIBS = -L$(shell $(PG_CONFIG) --libdir) -lpq -lmicrohttpd -ljansson -ljwt -pthread

all: $(GATEWAY)

$(GATEWAY): $(GATEWAY_SRCS) gateway/gateway.h
	$(CC) $(GATEWAY_CFLAGS) $(RELAY_CPPFLAGS) -o $@ $(GATEWAY_SRCS) $(GATEWAY_LIBS)

.PHONY: install-gateway uninstall-gateway
install: install-gateway
uninstall: uninstall-gateway

install-gateway: $(GATEWAY)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(GATEWAY) '$(DESTDIR)$(bindir)/waitlist-gateway'

uninstall-gateway:
	rm -f '$(DESTDIR)$(bindir)/waitlist-gateway'

EXTRA_CLEAN += $(GATEWAY)
