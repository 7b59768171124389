# granc -- a Granian-compatible Python application server in C.
#
#   make            build ./granc against $(PYTHON) (python3 on PATH)
#   make test       install test packages if missing, then C unit tests,
#                   the pytest suite, and the suite again under ASan/UBSan
#   make asan       build ./granc-asan (ASan + UBSan)
#   make fuzz       libFuzzer harnesses (clang), a short run each
#   make bench      wrk against granc and its peers (bench/run)
#   make install    PREFIX=/usr/local DESTDIR=

PYTHON      ?= python3
TEST_PYTHON ?= /usr/bin/python3
CC          ?= cc
PREFIX      ?= /usr/local
CFLAGS      ?= -O2 -g
FUZZ_SECONDS ?= 30

SRCS = granc.c master.c reload.c metrics.c ev.c http.c log.c worker.c wsgi.c asgi.c ws.c
HDRS = granc.h ev_epoll.c ev_kqueue.c asgi_ws.c

WARN = -std=c11 -D_GNU_SOURCE -Wall -Wextra $(CFLAGS_EXTRA)
TLS := $(shell printf '\043include <bearssl.h>\n' | $(CC) -E - >/dev/null 2>&1 && echo 1)
ifeq ($(TLS),1)
TLS_FLAGS = -DGRANC_TLS -lbearssl
SRCS += tls.c
endif

# $(call py_flags,python): compile and link flags for embedding that Python
py_flags = $(shell $(1)-config --includes) \
           -DGRANC_PYTHON='"$(shell $(1) -c 'import sys; print(sys.executable)')"' \
           $(shell $(1)-config --ldflags --embed) -lpthread

SAN = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

.PHONY: all test asan unit fuzz bench install clean deps kqueue-check pytest pytest-asan

all: granc

granc: $(SRCS) $(HDRS) Makefile
	$(CC) $(CFLAGS) $(WARN) -o $@ $(SRCS) $(call py_flags,$(PYTHON)) $(TLS_FLAGS)

asan: granc-asan
granc-asan: $(SRCS) $(HDRS) Makefile
	$(CC) $(SAN) $(WARN) -o $@ $(SRCS) $(call py_flags,$(PYTHON)) $(TLS_FLAGS)

# The binaries the test suite runs, built for Debian's interpreter.
tests/granc-test: $(SRCS) $(HDRS) Makefile
	$(CC) $(CFLAGS) $(WARN) -o $@ $(SRCS) $(call py_flags,$(TEST_PYTHON)) $(TLS_FLAGS)
tests/granc-asan: $(SRCS) $(HDRS) Makefile
	$(CC) $(SAN) $(WARN) -o $@ $(SRCS) $(call py_flags,$(TEST_PYTHON)) $(TLS_FLAGS)

tests/unit_http: tests/unit_http.c tests/tap.h http.c granc.h
	$(CC) $(SAN) $(WARN) -I. -o $@ tests/unit_http.c http.c
tests/unit_ev: tests/unit_ev.c ev.c ev_epoll.c ev_kqueue.c granc.h
	$(CC) $(SAN) $(WARN) -I. -o $@ tests/unit_ev.c ev.c
# ws.c twice: its own SHA-1, and BearSSL's as in a TLS build.
tests/unit_ws: tests/unit_ws.c tests/tap.h ws.c granc.h
	$(CC) $(SAN) $(WARN) -I. -o $@ tests/unit_ws.c ws.c
tests/unit_ws_tls: tests/unit_ws.c tests/tap.h ws.c granc.h
	$(CC) $(SAN) $(WARN) -DGRANC_TLS -I. -o $@ tests/unit_ws.c ws.c -lbearssl
# reload.c twice: inotify, and the portable stat() scan forced on Linux.
tests/unit_reload: tests/unit_reload.c tests/tap.h reload.c log.c http.c granc.h
	$(CC) $(SAN) $(WARN) -I. -o $@ tests/unit_reload.c reload.c log.c http.c
tests/unit_reload_poll: tests/unit_reload.c tests/tap.h reload.c log.c http.c granc.h
	$(CC) $(SAN) $(WARN) -DRELOAD_POLL -I. -o $@ tests/unit_reload.c reload.c log.c http.c
# tls.c, TLS builds only; openssl(1) makes its certificates at run time.
tests/unit_tls: tests/unit_tls.c tls.c granc.h
	$(CC) $(SAN) $(WARN) -DGRANC_TLS -I. -o $@ tests/unit_tls.c tls.c -lbearssl
ifeq ($(TLS),1)
UNIT_TLS = tests/unit_tls
endif

# No BSD machine here: prove the kqueue back end at least compiles.
kqueue-check:
	$(CC) $(WARN) -DEV_KQUEUE -Itests/kqueue -I. -c ev.c -o /tmp/granc-ev-kqueue.o

deps:
	@sh tests/deps.sh

unit: tests/unit_http tests/unit_ev tests/unit_ws tests/unit_ws_tls tests/unit_reload \
      tests/unit_reload_poll $(UNIT_TLS) kqueue-check
	./tests/unit_http
	./tests/unit_ev
	./tests/unit_ws
	./tests/unit_ws_tls
	./tests/unit_reload
	./tests/unit_reload_poll
	$(if $(UNIT_TLS),./$(UNIT_TLS))

pytest: tests/granc-test
	cd tests && GRANC_BIN=$(CURDIR)/tests/granc-test $(TEST_PYTHON) -m pytest -q -x -p no:cacheprovider .

pytest-asan: tests/granc-asan
	cd tests && GRANC_BIN=$(CURDIR)/tests/granc-asan GRANC_ASAN=1 \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(TEST_PYTHON) -m pytest -q -x -p no:cacheprovider -m 'not slow' .

test: deps
	$(MAKE) unit
	$(MAKE) pytest
	$(MAKE) pytest-asan

FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined $(WARN) -I.
fuzz:
	clang $(FUZZ_FLAGS) -o tests/fuzz_http tests/fuzz_http.c http.c
	mkdir -p /tmp/granc-fuzz-http
	./tests/fuzz_http -max_total_time=$(FUZZ_SECONDS) /tmp/granc-fuzz-http
	clang $(FUZZ_FLAGS) -o tests/fuzz_ws tests/fuzz_ws.c ws.c
	mkdir -p /tmp/granc-fuzz-ws
	./tests/fuzz_ws -max_total_time=$(FUZZ_SECONDS) /tmp/granc-fuzz-ws

bench: granc
	bench/run

install: granc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 granc $(DESTDIR)$(PREFIX)/bin/granc
	install -m 644 granc.1 $(DESTDIR)$(PREFIX)/share/man/man1/granc.1

clean:
	rm -f granc granc-asan tests/granc-test tests/granc-asan tests/unit_http \
	      tests/unit_ev tests/fuzz_http tests/unit_ws tests/unit_ws_tls tests/fuzz_ws \
	      tests/unit_tls tests/unit_reload tests/unit_reload_poll
