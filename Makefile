# granc -- a Granian-compatible Python application server in C.
#
#   make            build ./granc against $(PYTHON) (python3 on PATH), with
#                   libpython linked the way $(PYTHON) links it: linked in
#                   (static, not PIE) for Debian's /usr/bin/python3, the
#                   shared library for pyenv and other --enable-shared builds
#                   (tools/pylink.py); make prints which and why
#   make STATIC_PYTHON=1   force libpython linked in (py_static)
#   make STATIC_PYTHON=0   force the shared libpython (py_flags)
#   make check      unit tests and the request-path pytest files (fast)
#   make test       install test packages if missing, then C unit tests,
#                   a short fuzz run, the pytest suite, and the suite again
#                   under ASan/UBSan
#   make asan       build ./granc-asan (ASan + UBSan)
#   make fuzz       libFuzzer harnesses (clang, ASan, UBSan), FUZZ_SECONDS
#                   each; a long run: make fuzz FUZZ_SECONDS=3600
#   make fuzz-short the same for FUZZ_SHORT_SECONDS each (part of make test)
#   make bench      wrk against granc and its peers (bench/run)
#   make soak       30 min of mixed load under ASan, then 30 min without
#                   (bench/soak; SOAK_DURATION=seconds each)
#   make soak-short the same, 45 s each, errors only (part of make test)
#   make valgrind   a short mixed run under valgrind --leak-check=full
#                   (part of make test)
#   make install    PREFIX=/usr/local DESTDIR=
#   make install-python   the granian package (Granian's Python API, the
#                   granian command) into $(PYTHON)'s site-packages

PYTHON      ?= python3
TEST_PYTHON ?= /usr/bin/python3
CC          ?= cc
PREFIX      ?= /usr/local
CFLAGS      ?= -O2 -g
FUZZ_SECONDS ?= 30
FUZZ_SHORT_SECONDS ?= 20
FUZZ_CC     ?= clang
SOAK_DURATION ?= 1800
SOAK_SHORT    ?= 45

SRCS = granc.c master.c net.c reload.c metrics.c ev.c http.c log.c worker.c conn.c pool.c py.c \
       wsgi.c asgi.c asgi_ws.c rsgi.c rsgi_scope.c rsgi_ws.c aio.c ws.c \
       h2.c h2_conn.c hpack.c static.c
# The Python the worker runs (the asyncio runner, the app loader, the
# --log-config bridge) is kept in py/*.py and embedded as C strings.
PYSRC = py/runner.py.h py/loader.py.h py/logconf.py.h
HDRS = granc.h aio.h asgi_int.h conn.h ev.h h2.h hpack.h http.h log.h master.h metrics.h net.h pool.h py.h reload.h req.h rsgi.h static.h \
       tls.h tls_int.h worker.h worker_int.h ws.h wsgi.h ev_epoll.c ev_kqueue.c $(PYSRC)

WARN = -std=c11 -D_GNU_SOURCE -Wall -Wextra $(CFLAGS_EXTRA)
# Release builds drop assert(): granc has none of its own, and those in
# Python's inline headers (PyTuple_SET_ITEM and the like) are for checking
# CPython itself; its extension modules are built with -DNDEBUG too
# (python3-config --cflags).  The ASan builds keep them.
REL = -DNDEBUG
TLS := $(shell printf '\043include <bearssl.h>\n' | $(CC) -E - >/dev/null 2>&1 && echo 1)
ifeq ($(TLS),1)
TLS_FLAGS = -DGRANC_TLS -lbearssl
SRCS += tls.c tls_load.c
endif

# $(call py_flags,python): compile and link flags for embedding that Python
py_cflags = $(shell $(1)-config --includes) \
            -DGRANC_PYTHON='"$(shell $(1) -c 'import sys; print(sys.executable)')"'
py_flags = $(call py_cflags,$(1)) $(shell $(1)-config --ldflags --embed) -lpthread

# $(call py_static,python,pie): the same with the interpreter's static
# library, linked as Debian links its own python3.X executable: its symbols
# exported for extension modules, and not position-independent unless the
# second argument is "pie".  Python code runs about 13 % faster than with the
# shared libpython (a Django view under ASGI: docs/performance.md); the price
# is a 7 MiB binary, whose own code has no address randomisation when
# python3's has none either.
py_static = $(call py_cflags,$(1)) $(if $(filter pie,$(2)),,-no-pie) \
            $(shell $(1) -c 'import sysconfig as s; v = s.get_config_var; \
              print(v("LINKFORSHARED"), v("LIBPL") + "/" + v("LIBRARY"), v("LIBS"), \
                    v("MODLIBS"), v("SYSLIBS"))') -lpthread

# $(call py_choice,python): "static no-pie WHY", "static pie WHY" or
# "shared pie WHY": link libpython the way that interpreter is linked, so that
# granc runs Python at python3's speed and with its hardening; STATIC_PYTHON=1
# or 0 forces one (tools/pylink.py says how it tells).
ifneq ($(filter-out 0 1,$(STATIC_PYTHON)),)
$(error STATIC_PYTHON is 1 (libpython linked in), 0 (shared) or unset (as $(PYTHON) is linked))
endif
py_choice = $(shell $(1) tools/pylink.py $(STATIC_PYTHON))
# $(call py_link,python): the flags py_choice chose; $(call py_why,python):
# the line make prints
py_link = $(call py_link2,$(1),$(call py_choice,$(1)))
py_link2 = $(if $(filter static,$(word 1,$(2))),$(call py_static,$(1),$(word 2,$(2))),$(call py_flags,$(1)))
py_why = $(wordlist 3,100,$(call py_choice,$(1)))
# $(call link_stamp,file,python): FILE records that python and the link it
# gets, rewritten only when they change, so that a binary depending on it is
# relinked after make PYTHON=... or STATIC_PYTHON=...
link_stamp = s='$(2) $(wordlist 1,2,$(call py_choice,$(2)))'; \
             [ "$$(cat $(1) 2>/dev/null)" = "$$s" ] || echo "$$s" > $(1)

SAN = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

.PHONY: FORCE all check test asan unit fuzz fuzz-short bench install install-python clean deps kqueue-check pytest \
        pytest-asan \
        soak soak-short valgrind

all: granc

granc: $(SRCS) $(HDRS) Makefile .granc.link
	@echo "$@: $(call py_why,$(PYTHON))"
	$(CC) $(CFLAGS) $(REL) $(WARN) -o $@ $(SRCS) $(call py_link,$(PYTHON)) $(TLS_FLAGS)

# ASan builds link the shared libpython whatever the interpreter.  A static,
# non-PIE link runs under ASan too, but checks nothing more: libpython is not
# instrumented either way, and only granc's own code is.  The suite runs the
# static link through tests/granc-test.
asan: granc-asan
granc-asan: $(SRCS) $(HDRS) Makefile
	$(CC) $(SAN) $(WARN) -o $@ $(SRCS) $(call py_flags,$(PYTHON)) $(TLS_FLAGS)

# The binaries the test suite runs, built for Debian's interpreter.
# tests/granc-test is linked as make links ./granc for it (libpython linked
# in, not PIE, unless STATIC_PYTHON=0): the build Debian users get.
# tests/granc-shared is the other link, for the bench's granc-shared rows and
# for the footprint of granc's own code.
tests/granc-test: $(SRCS) $(HDRS) Makefile tests/.granc-test.link
	@echo "$@: $(call py_why,$(TEST_PYTHON))"
	$(CC) $(CFLAGS) $(REL) $(WARN) -o $@ $(SRCS) $(call py_link,$(TEST_PYTHON)) $(TLS_FLAGS)
tests/granc-shared: $(SRCS) $(HDRS) Makefile
	$(CC) $(CFLAGS) $(REL) $(WARN) -o $@ $(SRCS) $(call py_flags,$(TEST_PYTHON)) $(TLS_FLAGS)
.granc.link: tools/pylink.py FORCE
	@$(call link_stamp,$@,$(PYTHON))
tests/.granc-test.link: tools/pylink.py FORCE
	@$(call link_stamp,$@,$(TEST_PYTHON))
FORCE:
tests/granc-asan: $(SRCS) $(HDRS) Makefile
	$(CC) $(SAN) $(WARN) -o $@ $(SRCS) $(call py_flags,$(TEST_PYTHON)) $(TLS_FLAGS)

# C unit tests (tests/unit/, TAP through tests/unit/tap.h), built with
# ASan and UBSan and linked with the one file each tests.
U = tests/unit
$(U)/unit_http: $(U)/unit_http.c $(U)/tap.h http.c $(HDRS)
	$(CC) $(SAN) $(WARN) -I. -o $@ $(U)/unit_http.c http.c
$(U)/unit_ev: $(U)/unit_ev.c $(U)/tap.h ev.c $(HDRS)
	$(CC) $(SAN) $(WARN) -I. -o $@ $(U)/unit_ev.c ev.c
$(U)/unit_ws: $(U)/unit_ws.c $(U)/tap.h ws.c $(HDRS)
	$(CC) $(SAN) $(WARN) -I. -o $@ $(U)/unit_ws.c ws.c
$(U)/unit_hpack: $(U)/unit_hpack.c $(U)/tap.h hpack.c $(HDRS)
	$(CC) $(SAN) $(WARN) -I. -o $@ $(U)/unit_hpack.c hpack.c
$(U)/unit_h2: $(U)/unit_h2.c $(U)/tap.h h2.c hpack.c http.c $(HDRS)
	$(CC) $(SAN) $(WARN) -I. -o $@ $(U)/unit_h2.c h2.c hpack.c http.c -lpthread
# reload.c twice: inotify, and the portable stat() scan forced on Linux.
$(U)/unit_reload: $(U)/unit_reload.c $(U)/tap.h reload.c log.c http.c $(HDRS)
	$(CC) $(SAN) $(WARN) -I. -o $@ $(U)/unit_reload.c reload.c log.c http.c
$(U)/unit_reload_poll: $(U)/unit_reload.c $(U)/tap.h reload.c log.c http.c $(HDRS)
	$(CC) $(SAN) $(WARN) -DRELOAD_POLL -I. -o $@ $(U)/unit_reload.c reload.c log.c http.c
# tls.c and tls_load.c, TLS builds only; openssl(1) makes its certificates at run time.
$(U)/unit_tls: $(U)/unit_tls.c $(U)/tap.h tls.c tls_load.c $(HDRS)
	$(CC) $(SAN) $(WARN) -DGRANC_TLS -I. -o $@ $(U)/unit_tls.c tls.c tls_load.c -lbearssl
$(U)/unit_static: $(U)/unit_static.c $(U)/tap.h static.c log.c http.c $(HDRS)
	$(CC) $(SAN) $(WARN) -I. -o $@ $(U)/unit_static.c static.c log.c http.c

UNITS = $(U)/unit_http $(U)/unit_ev $(U)/unit_ws $(U)/unit_hpack $(U)/unit_h2 $(U)/unit_reload $(U)/unit_reload_poll \
        $(U)/unit_static
ifeq ($(TLS),1)
UNITS += $(U)/unit_tls
endif

# No BSD machine here: prove the kqueue back end at least compiles.
kqueue-check:
	$(CC) $(WARN) -DEV_KQUEUE -Itests/kqueue -I. -c ev.c -o /tmp/granc-ev-kqueue.o

deps:
	@sh tests/deps.sh

unit: $(UNITS) kqueue-check
	@fail=0; for t in $(UNITS); do \
	  ./$$t >/tmp/granc-unit.$$$$ 2>&1 || { cat /tmp/granc-unit.$$$$; echo "$$t: FAILED"; fail=1; continue; }; \
	  echo "$$t: $$(grep -c '^ok' /tmp/granc-unit.$$$$) tests passed"; \
	done; rm -f /tmp/granc-unit.$$$$; exit $$fail

# The fast part of the suite: the unit tests and the pytest files of the
# request path (about a minute), before a commit.
CHECK_PY = test_http.py test_wsgi.py test_asgi.py test_rsgi.py test_ws.py test_headers.py test_smuggling.py
check: unit tests/granc-test
	cd tests && GRANC_BIN=$(CURDIR)/tests/granc-test $(TEST_PYTHON) -m pytest -q -x -p no:cacheprovider \
	  -m 'not slow' $(CHECK_PY)

pytest: tests/granc-test
	cd tests && GRANC_BIN=$(CURDIR)/tests/granc-test $(TEST_PYTHON) -m pytest -q -x -p no:cacheprovider .

pytest-asan: tests/granc-asan
	cd tests && GRANC_BIN=$(CURDIR)/tests/granc-asan GRANC_ASAN=1 \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(TEST_PYTHON) -m pytest -q -x -p no:cacheprovider -m 'not slow' .

test: deps
	$(MAKE) unit
	$(MAKE) fuzz-short
	$(MAKE) pytest
	$(MAKE) pytest-asan
	$(MAKE) soak-short
	$(MAKE) valgrind

# bench/soak: one worker, wrk (bench/soak.lua: small GET, 64 KiB GET, 16 KiB
# POST) in windows of 60 s plus a WebSocket client, checked for errors, rate
# and RSS drift, and descriptor leaks.  ASan first, then the normal build;
# both always run, and the results land in /tmp/granc-soak-*.json.
SOAK_ASAN = ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
soak: tests/granc-asan tests/granc-test
	@st=0; \
	$(SOAK_ASAN) bench/soak tests/granc-asan --duration $(SOAK_DURATION) \
	  --out /tmp/granc-soak-asan.json || st=1; \
	bench/soak tests/granc-test --duration $(SOAK_DURATION) \
	  --out /tmp/granc-soak.json || st=1; \
	exit $$st

# The short version: windows of 5 s; rates and RSS are printed but not
# judged (too short and too noisy), everything else is.
soak-short: tests/granc-asan tests/granc-test
	$(SOAK_ASAN) bench/soak tests/granc-asan --duration $(SOAK_SHORT) --window 5 --no-drift \
	  --out /tmp/granc-soak-short-asan.json
	bench/soak tests/granc-test --duration $(SOAK_SHORT) --window 5 --no-drift \
	  --out /tmp/granc-soak-short.json

# A short mixed run (bench/soak, 20 s) with master and worker under
# valgrind, one log per process.  Fails on any error valgrind counts:
# invalid reads and writes, uninitialised values, definitely lost memory.
# tests/valgrind.supp holds suppressions for CPython/uvloop internals only.
VG_LOGS = /tmp/granc-vg
VALGRIND = valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9 \
           --trace-children=yes --suppressions=$(CURDIR)/tests/valgrind.supp \
           --log-file=$(VG_LOGS)/vg.%p
valgrind: tests/granc-test
	@mkdir -p $(VG_LOGS) && rm -f $(VG_LOGS)/vg.*
	@st=0; \
	bench/soak tests/granc-test --duration 20 --window 10 --no-drift --connections 8 \
	  --ws-rate 5 --start-timeout 120 --stop-timeout 120 --wrap "$(VALGRIND)" \
	  --out /tmp/granc-valgrind.json || st=1; \
	n=0; for f in $(VG_LOGS)/vg.*; do \
	  n=$$((n + 1)); \
	  grep -H "definitely lost:\|ERROR SUMMARY:" $$f; \
	  grep -q "ERROR SUMMARY: 0 errors" $$f || { cat $$f; st=1; }; \
	done; \
	[ $$n -ge 2 ] || { echo "valgrind: expected logs of master and worker, got $$n"; st=1; }; \
	exit $$st

# libFuzzer harnesses, built apart from granc.  Uninitialised locals get a
# pattern (0xAA...) so that reading one goes visibly wrong.
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
             -ftrivial-auto-var-init=pattern $(WARN) -I.
FUZZERS = http ws hpack h2 opts
ifeq ($(TLS),1)
FUZZERS += pem
endif

F = tests/fuzz
$(F)/fuzz_http: $(F)/fuzz_http.c http.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(F)/fuzz_http.c http.c
$(F)/fuzz_ws: $(F)/fuzz_ws.c ws.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(F)/fuzz_ws.c ws.c
$(F)/fuzz_hpack: $(F)/fuzz_hpack.c hpack.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(F)/fuzz_hpack.c hpack.c
$(F)/fuzz_h2: $(F)/fuzz_h2.c h2.c hpack.c http.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(F)/fuzz_h2.c h2.c hpack.c http.c -lpthread
# granc.c and tls_load.c with GRANC_FUZZ: see the hooks there.
$(F)/fuzz_opts: $(F)/fuzz_opts.c granc.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DGRANC_FUZZ $(if $(filter 1,$(TLS)),-DGRANC_TLS) \
	  -o $@ $(F)/fuzz_opts.c granc.c
$(F)/fuzz_pem: $(F)/fuzz_pem.c tls_load.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DGRANC_FUZZ -DGRANC_TLS -o $@ $(F)/fuzz_pem.c -lbearssl

# $(call fuzz_run,seconds): each harness in turn, from its seed corpus and
# the inputs that once crashed it (tests/fuzz/crashes/NAME/), with its
# dictionary.  New inputs go to a scratch directory, so the corpus in the
# repository does not grow; after a failure it keeps the input and the log.
fuzz_run = fail=0; for f in $(FUZZERS); do \
	  d=$$(mktemp -d /tmp/granc-fuzz-$$f.XXXXXX) || exit 1; \
	  c=tests/fuzz/corpus/$$f; [ -d tests/fuzz/crashes/$$f ] && c="$$c tests/fuzz/crashes/$$f"; \
	  if ./tests/fuzz/fuzz_$$f -max_total_time=$(1) -timeout=30 -print_final_stats=1 \
	       -dict=tests/fuzz/$$f.dict -artifact_prefix=$$d/ $$d $$c >$$d/log 2>&1; then \
	    echo "fuzz_$$f: $$(grep -o 'cov: [0-9]* ft: [0-9]*' $$d/log | tail -1)," \
	         "$$(grep -o 'Done [0-9]* runs in [0-9]* second' $$d/log)s"; \
	    rm -rf $$d; \
	  else \
	    tail -n 30 $$d/log; echo "fuzz_$$f: FAILED; input and log in $$d"; fail=1; \
	  fi; \
	done; exit $$fail

fuzz: $(FUZZERS:%=$(F)/fuzz_%)
	@$(call fuzz_run,$(FUZZ_SECONDS))
fuzz-short: $(FUZZERS:%=$(F)/fuzz_%)
	@$(call fuzz_run,$(FUZZ_SHORT_SECONDS))

bench: granc
	bench/run

install: granc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 granc $(DESTDIR)$(PREFIX)/bin/granc
	install -m 644 granc.1 $(DESTDIR)$(PREFIX)/share/man/man1/granc.1

# python/install.py: no pip needed; refuses to replace a real Granian.
install-python:
	$(PYTHON) python/install.py --bindir $(PREFIX)/bin $(if $(DESTDIR),--destdir $(DESTDIR))

# Everything the Makefile builds; clean removes exactly these.
BINS = granc granc-asan tests/granc-test tests/granc-asan tests/granc-shared \
       $(U)/unit_http $(U)/unit_ev $(U)/unit_ws $(U)/unit_hpack $(U)/unit_reload \
       $(U)/unit_reload_poll $(U)/unit_tls $(F)/fuzz_http $(F)/fuzz_ws $(F)/fuzz_hpack \
       $(F)/fuzz_opts $(F)/fuzz_pem

LINK_STAMPS = .granc.link tests/.granc-test.link

py/%.py.h: py/%.py
	{ printf 'static const char %s_src[] =\n' $*; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } > $@

clean:
	rm -f $(BINS) $(PYSRC) $(LINK_STAMPS)
