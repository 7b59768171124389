/* metrics.h -- --metrics: counters in shared memory, a Prometheus exporter (metrics.c). */
#ifndef METRICS_H
#define METRICS_H

#include <poll.h>
#include "granc.h"

/* One worker's counters, in memory shared with the master.  The worker
 * writes them with relaxed atomic adds (several of its threads may);
 * the master reads them when scraped: there is no collection lag. */
typedef struct wk_metrics {
    /* set by the master */
    pid_t pid;                       /* 0: the slot is free */
    int id;                          /* worker number, the "worker" label */
    double born;                     /* monotonic seconds at spawn */
    /* set by the worker (Granian's names without the granian_ prefix) */
    uint64_t connections_active;     /* gauge */
    uint64_t connections_handled, connections_err, requests_handled;
    uint64_t static_requests_handled, static_requests_err;
    uint64_t blocking_threads, blocking_queue;               /* gauges */
    uint64_t blocking_idle_cumulative, blocking_busy_cumulative; /* us */
    uint64_t py_wait_cumulative;     /* us */
} wk_metrics;

#define M_ADD(field, n) __atomic_fetch_add(&wk_m->field, (uint64_t)(n), __ATOMIC_RELAXED)
#define M_SUB(field, n) __atomic_fetch_sub(&wk_m->field, (uint64_t)(n), __ATOMIC_RELAXED)
#define M_SET(field, v) __atomic_store_n(&wk_m->field, (uint64_t)(v), __ATOMIC_RELAXED)
/* This process's slot: a shared one in workers when --metrics is on,
 * else a private dummy, so that counting never needs a branch. */
extern wk_metrics *wk_m;

/* The master's own counters (Granian's workers_* metrics). */
enum { MC_SPAWNS, MC_RESPAWN_ERR, MC_RESPAWN_LIFETIME, MC_RESPAWN_RSS, MC_N };

/* Master, before any fork: map nslots shared slots and bind the exporter
 * on --metrics-address:--metrics-port (die() on failure). */
void metrics_open(const config *cfg, int nslots);
/* Master: slot i now belongs to worker `id` with `pid` (born now), or is
 * free again (pid 0). */
void metrics_worker(int i, pid_t pid, int id);
/* In a freshly forked worker: close the exporter's descriptors (an
 * inherited client socket would outlive the master's close), point wk_m
 * at slot i and zero its counters. */
void metrics_child(int i);
void metrics_count(int which);       /* MC_*: one more */
/* The master's poll set: the exporter's listener and its clients.  Fills
 * up to max entries, returns how many; lowers *timeout_ms (-1: none) to
 * the nearest client deadline. */
int metrics_pollfds(struct pollfd *p, int max, int *timeout_ms);
/* Serve what poll reported on the entries metrics_pollfds filled. */
void metrics_handle(const struct pollfd *p, int n);
void metrics_close(void);

#endif
