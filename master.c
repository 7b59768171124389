/* master.c -- the master process: workers, signals, the pid file.
 *
 * The master binds every listener (net.c), forks the workers and supervises them
 * from one loop, as nginx does: signals stay blocked except while the loop
 * sleeps, handlers only set flags, all work happens in the loop.  It never
 * starts Python.
 */
#include "granc.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "net.h"
#include "reload.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME(name) opt_label(name)  /* the flag or variable that set it */

static config cfg;                  /* the master's copy */
static pid_t master_pid;            /* 0 until the master owns files to clean */

/* ===================================================================
 * Master: pid file
 * =================================================================== */

static listener ls[MAX_LISTENERS];   /* net_listen's */
static int nls;
static listener *slot_ls;           /* worker id's: slot_ls[(id-1)*nls + i] */
static int pid_written;

static long pidfile_read(void)
{
    FILE *f = fopen(cfg.pid_file, "r");
    long pid = 0;

    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid;
}

/* Remove what the master created.  Workers never do: the files are the
 * master's, and a worker exiting must not unlink the live socket. */
void master_cleanup(void)
{
    if (!master_pid || getpid() != master_pid)
        return;
    if (pid_written && pidfile_read() == (long)master_pid)
        unlink(cfg.pid_file);
    net_cleanup();
    pid_written = 0;
}

static void pidfile_write(void)
{
    long pid = pidfile_read();
    FILE *f;

    if (pid > 0 && pid != (long)master_pid && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
        die("%s: %s holds the PID of running process %ld", NAME("pid-file"), cfg.pid_file, pid);
    if (!(f = fopen(cfg.pid_file, "w")))
        die("%s: %s: %s", NAME("pid-file"), cfg.pid_file, strerror(errno));
    fprintf(f, "%ld\n", (long)master_pid);
    if (fclose(f))
        die("%s: %s: %s", NAME("pid-file"), cfg.pid_file, strerror(errno));
    pid_written = 1;
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET ("@"
 * starts an abstract name).  The variable is taken at start-up so that
 * workers and their applications cannot speak for the service. */
static struct sockaddr_un notify_sa;
static socklen_t notify_len;

static void notify_init(void)
{
    const char *p = getenv("NOTIFY_SOCKET");
    size_t n = p ? strlen(p) : 0;

    if (!n || n >= sizeof notify_sa.sun_path || (p[0] != '/' && p[0] != '@'))
        return;
    notify_sa.sun_family = AF_UNIX;
    memcpy(notify_sa.sun_path, p, n);
    if (p[0] == '@')
        notify_sa.sun_path[0] = 0;
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    unsetenv("NOTIFY_SOCKET");
}

static void notify(const char *msg)
{
    int fd;

    if (!notify_len || (fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&notify_sa,
               notify_len) < 0)
        log_debug("NOTIFY_SOCKET: %s", strerror(errno));
    close(fd);
}

/* ===================================================================
 * Master: workers and signals
 * =================================================================== */

/* A worker process.  During a rolling restart a slot briefly has two, the
 * new one and the retiring one: hence workers + 1 entries. */
typedef struct kid {
    pid_t pid;                      /* 0: free entry */
    int id;                         /* worker number, 1..workers */
    int asked;                      /* we sent SIGTERM: its exit is expected */
    int respawned;                  /* it replaces a worker that failed */
    int ready;                      /* it said WM_READY: the app is loaded */
    int gen;                        /* the reload it was spawned after */
    int recycle;                    /* it said WM_RECYCLE: --max-requests */
    int over;                       /* RSS samples over --workers-max-rss in a row */
    double born;                    /* monotonic seconds at spawn */
} kid;

/* Granian's crash-loop guard: a respawned worker that dies this soon
 * after its spawn would only die again. */
#define CRASH_LOOP_S 5.5

static kid *kids;
static int nkids;
static int failed;                  /* a worker exited unasked: stop, exit 1 */
static int ready_sent;              /* READY=1 went to systemd for this generation */
static int gen;                     /* reloads so far: workers' generation */
static int tell[2] = { -1, -1 };    /* workers -> master messages (wk_tell) */
static reload_watch *watch;         /* --reload */
static int got_change;              /* --reload saw a change */
static double next_scan;            /* --reload without inotify: next scan */
static sigset_t waitmask;           /* the mask while asleep in ppoll */
static volatile sig_atomic_t got_stop, got_hup;

static const int handled[] = { SIGINT, SIGTERM, SIGHUP, SIGCHLD };
#define NHANDLED ((int)(sizeof handled / sizeof handled[0]))

/* Record and return.  SIGCHLD needs no flag: each wake-up reaps. */
static void on_signal(int sig)
{
    int saved = errno;

    if (sig == SIGINT || sig == SIGTERM)
        got_stop = 1;
    else if (sig == SIGHUP)
        got_hup = 1;
    errno = saved;
}

/* Block the handled signals for good; they are delivered only inside
 * ppoll(), so no flag can change between a check and the sleep. */
static void signals_init(void)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigset_t block;

    sigemptyset(&block);
    for (int i = 0; i < NHANDLED; i++)
        sigaddset(&block, handled[i]);
    sa.sa_mask = block;
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    for (int i = 0; i < NHANDLED; i++) {
        sigaction(handled[i], &sa, NULL);
        sigdelset(&waitmask, handled[i]);
    }
}

static kid *find(pid_t pid)
{
    for (int i = 0; i < nkids; i++)
        if (kids[i].pid == pid)
            return &kids[i];
    return NULL;
}

/* READY=1 once every worker of the current generation has loaded the
 * app (after start-up, and again after each reload). */
static void check_ready(void)
{
    int live = 0;

    for (int i = 0; i < nkids; i++) {
        if (!kids[i].pid || kids[i].asked || kids[i].gen != gen)
            continue;
        if (!kids[i].ready)
            return;
        live++;
    }
    if (!ready_sent && live >= cfg.workers) {
        char msg[64];
        snprintf(msg, sizeof msg, "READY=1\nMAINPID=%ld", (long)master_pid);
        notify(msg);
        ready_sent = 1;
    }
}

/* Messages from the workers: a pipe shared by all, each message one
 * atomic write of a tell_msg. */
static void read_tells(void)
{
    tell_msg m;
    kid *k;

    while (read(tell[0], &m, sizeof m) == (ssize_t)sizeof m) {
        if (!(k = find(m.pid)))
            continue;
        if (m.what == WM_READY)
            k->ready = 1;
        else if (m.what == WM_RECYCLE && !k->asked)
            k->recycle = 1;
    }
    check_ready();
}

/* Sleep until a signal, a worker's message, an exporter client or a file
 * change needs the master, or until `until` (monotonic seconds, 0 = no
 * limit).  ppoll unblocks the handled signals only while it sleeps, as
 * sigsuspend would. */
static void wait_events(double until)
{
    struct pollfd p[64];
    int n = 0, ms = -1, rfd = watch ? reload_fd(watch) : -1, m0;
    struct timespec ts;

    if (until > 0)
        ms = until <= clock_s() ? 0 : (int)((until - clock_s()) * 1000) + 1;
    if (watch && rfd < 0) {         /* the stat() scanner runs on a tick */
        int due = next_scan <= clock_s() ? 0 : (int)((next_scan - clock_s()) * 1000) + 1;
        ms = ms < 0 || due < ms ? due : ms;
    }
    p[n++] = (struct pollfd){ .fd = tell[0], .events = POLLIN };
    if (rfd >= 0)
        p[n++] = (struct pollfd){ .fd = rfd, .events = POLLIN };
    m0 = n;
    n += metrics_pollfds(p + n, (int)(sizeof p / sizeof p[0]) - n, &ms);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    if (ppoll(p, (nfds_t)n, ms < 0 ? NULL : &ts, &waitmask) > 0) {
        if (p[0].revents)
            read_tells();
        if (rfd >= 0 && p[1].revents && reload_changed(watch))
            got_change = 1;
        metrics_handle(p + m0, n - m0);
    }
    if (watch && rfd < 0 && next_scan <= clock_s()) {
        got_change |= reload_changed(watch);
        next_scan = clock_s() + cfg.reload_tick_ms / 1000.0;
    }
}

static kid *spawn(int id)
{
    kid *k = NULL;
    pid_t pid;

    for (int i = 0; i < nkids && !k; i++)
        if (!kids[i].pid)
            k = &kids[i];
    fflush(NULL);                   /* or the child repeats buffered output */
    if (!k || (pid = fork()) < 0) {
        log_error("Cannot spawn worker-%d: %s", id, k ? strerror(errno) : "no free slot");
        return NULL;
    }
    if (pid == 0) {
        sigset_t none;
        for (int i = 0; i < NHANDLED; i++)
            signal(handled[i], SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGTERM);  /* a killed master: drain and go */
        if (getppid() != master_pid)
            raise(SIGTERM);
#endif
        if (watch)
            reload_close(watch);
        metrics_child((int)(k - kids));
        close(tell[0]);
        wk_tell_fd = tell[1];
        if (cfg.process_name)
            proc_title("%s worker-%d", cfg.process_name, id);
        const listener *mine = slot_ls ? &slot_ls[(id - 1) * nls] : ls;
        for (int i = 0; slot_ls && i < cfg.workers * nls; i++)
            if (&slot_ls[i] < mine || &slot_ls[i] >= mine + nls)
                close(slot_ls[i].fd);   /* the other workers' sockets */
        wk_main(&cfg, mine, nls, id);
    }
    *k = (kid){ .pid = pid, .id = id, .born = clock_s(), .gen = gen };
    metrics_worker((int)(k - kids), pid, id);
    metrics_count(MC_SPAWNS);
    log_info("Spawning worker-%d with PID: %ld", id, (long)pid);
    return k;
}

/* Collect exited workers.  An exit we did not ask for stops the server,
 * unless --respawn-failed-workers replaces the worker.  Never respawned: a
 * worker that could not load the app (it would only fail again), and one
 * that was itself a respawn and died within CRASH_LOOP_S.  Under --reload
 * with --reload-ignore-worker-failure the master waits for the next
 * change instead. */
static void reap(void)
{
    pid_t pid;
    int st;
    kid *k, *n;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (!(k = find(pid)))
            continue;
        k->pid = 0;
        metrics_worker((int)(k - kids), 0, 0);
        if (k->asked)
            continue;
        int load = WIFEXITED(st) && WEXITSTATUS(st) == WK_EXIT_LOAD;
        if (load) {
            if (!failed)
                log_error("Application could not be loaded (worker-%d)%s", k->id,
                          cfg.reload && cfg.reload_ignore_worker_failure
                          ? "" : ", shutting down");
        } else if (WIFSIGNALED(st)) {
            log_error("Unexpected exit from worker-%d (killed by signal %d)",
                      k->id, WTERMSIG(st));
        } else {
            log_error("Unexpected exit from worker-%d (exit status %d)",
                      k->id, WEXITSTATUS(st));
        }
        if (cfg.reload && cfg.reload_ignore_worker_failure) {
            log_info("Waiting for a change to reload workers");
            continue;
        }
        if (cfg.respawn_failed_workers && !load && !failed && !got_stop) {
            if (k->respawned && clock_s() - k->born < CRASH_LOOP_S) {
                log_error("Worker crash loop detected, exiting");
            } else if ((n = spawn(k->id))) {
                n->respawned = 1;
                metrics_count(MC_RESPAWN_ERR);
                continue;
            }
        }
        failed = 1;
    }
}

static void stop_worker(kid *k)
{
    log_info("Stopping worker-%d", k->id);
    k->asked = 1;
    kill(k->pid, SIGTERM);
}

/* Keep reaping until `secs` have passed (k == NULL) or until worker k has
 * exited, SIGKILLing it when `secs` run out (0: never).  -1 as soon as a
 * stop signal or a failure calls the main loop back. */
static int wait_for(kid *k, double secs)
{
    double until = secs > 0 ? clock_s() + secs : 0;

    for (;;) {
        reap();
        if (got_stop || failed)
            return -1;
        if (k ? !k->pid : clock_s() >= until)
            return 0;
        if (k && until > 0 && clock_s() >= until) {
            log_warn("worker-%d did not stop in %g s, killing it", k->id, secs);
            kill(k->pid, SIGKILL);
            until = 0;
        }
        wait_events(until);
    }
}

/* Replace one worker gracefully: the new one first, then, after
 * --respawn-interval, the old one is told to stop.  -1 when a stop signal
 * or a failure cut it short. */
static int replace(kid *old)
{
    if (!spawn(old->id) || wait_for(NULL, cfg.respawn_interval_s) < 0)
        return -1;
    stop_worker(old);
    return wait_for(old, cfg.workers_kill_timeout_s);
}

/* --env-files: dotenv lines (KEY=value, optional "export ", '#'
 * comments, single or double quotes, \n in double quotes) into the
 * environment the workers inherit, never overriding a variable already
 * set (python-dotenv's override=False, as Granian).  -1 with errno when a
 * file cannot be read. */
static int load_env_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        char *k = line, *v, *e;
        while (*k == ' ' || *k == '\t') k++;
        if (!strncmp(k, "export ", 7)) k += 7;
        if (*k == '#' || !(v = strchr(k, '=')))
            continue;
        for (e = v; e > k && (e[-1] == ' ' || e[-1] == '\t'); e--) {}
        *e = 0;
        for (v++; *v == ' ' || *v == '\t'; v++) {}
        e = v + strcspn(v, "\r\n");
        *e = 0;
        if (*v == '"' || *v == '\'') {         /* quoted: up to the same quote */
            char q = *v++, *w = v, *r = v;
            for (; *r && *r != q; r++)
                *w++ = q == '"' && r[0] == '\\' && r[1] == 'n' ? (r++, '\n') : *r;
            *w = 0;
        } else {                                /* bare: an inline comment ends it */
            char *c = strstr(v, " #");
            if (c) *c = 0;
            for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t'); e--) {}
            *e = 0;
        }
        if (*k && strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            "0123456789_.") == strlen(k))
            setenv(k, v, 0);
    }
    fclose(f);
    return 0;
}

static void load_env_files(int at_start)
{
    for (int i = 0; i < cfg.env_files.n; i++)
        if (load_env_file(cfg.env_files.v[i]) < 0) {
            if (at_start)
                die("%s: %s: %s", NAME("env-files"), cfg.env_files.v[i], strerror(errno));
            log_warn("%s: %s: %s", NAME("env-files"), cfg.env_files.v[i], strerror(errno));
        }
}

/* systemd's reload protocol: RELOADING=1 with the time, READY=1 when the
 * new generation has loaded (check_ready). */
static void notify_reloading(void)
{
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%lld",
             (long long)(clock_s() * 1e6));
    notify(msg);
    ready_sent = 0;
    gen++;
}

/* SIGHUP: replace the workers one at a time, each new one spawned before
 * its predecessor is told to stop, so the shared listeners always have a
 * worker accepting.  A stop signal or a failure cuts it short; the
 * shutdown that follows stops old and new workers alike. */
static void rolling_restart(void)
{
    log_info("Restarting workers");
    notify_reloading();
    load_env_files(0);              /* as Granian: re-read on reload */
    for (int id = 1; id <= cfg.workers; id++) {
        kid *old = NULL;
        for (int i = 0; i < nkids && !old; i++)
            if (kids[i].pid && kids[i].id == id && !kids[i].asked)
                old = &kids[i];
        if (old && replace(old) < 0)
            return;
    }
}

/* --reload: as Granian, stop every worker, then spawn them all (the new
 * code may not even load; a rolling restart would serve two versions). */
static void reload_all(void)
{
    notify_reloading();
    load_env_files(0);
    for (int i = 0; i < nkids; i++)
        if (kids[i].pid && !kids[i].asked)
            stop_worker(&kids[i]);
    for (int i = 0; i < nkids; i++)
        if (kids[i].pid && wait_for(&kids[i], cfg.workers_kill_timeout_s) < 0)
            return;
    for (int id = 1; id <= cfg.workers && !failed; id++)
        failed = !spawn(id);
}

/* A worker's resident memory in MiB (Linux /proc; 0 elsewhere). */
static long rss_mib(pid_t pid)
{
    char path[64];
    long pages = 0, rss = 0;
    snprintf(path, sizeof path, "/proc/%ld/statm", (long)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024) / 1024;
}

static double next_rss;             /* when the RSS monitor samples next */

/* --max-requests, --workers-lifetime and --workers-max-rss: replace at
 * most one worker per call (1 if it did).  Like Granian, a worker past
 * 95 % of its lifetime is replaced, and one over the RSS limit for
 * --rss-samples samples in a row. */
static int check_workers(void)
{
    double t = clock_s();
    for (int i = 0; i < nkids; i++) {
        kid *k = &kids[i];
        if (k->pid && !k->asked && k->recycle) {
            log_info("worker-%d served its --max-requests, respawning", k->id);
            replace(k);
            return 1;
        }
    }
    for (int i = 0; cfg.workers_lifetime_s && i < nkids; i++) {
        kid *k = &kids[i];
        if (k->pid && !k->asked && t - k->born >= 0.95 * cfg.workers_lifetime_s) {
            log_info("worker-%d lifetime expired, respawning", k->id);
            metrics_count(MC_RESPAWN_LIFETIME);
            replace(k);
            return 1;
        }
    }
    if (!cfg.workers_max_rss_mib || t < next_rss)
        return 0;
    next_rss = t + cfg.rss_sample_interval_s;
    for (int i = 0; i < nkids; i++) {
        kid *k = &kids[i];
        long mib = k->pid && !k->asked ? rss_mib(k->pid) : 0;
        k->over = mib > cfg.workers_max_rss_mib ? k->over + 1 : 0;
        if (k->over >= cfg.rss_samples) {
            log_info("worker-%d RSS is %ld MiB, over the %d MiB limit: respawning",
                     k->id, mib, cfg.workers_max_rss_mib);
            metrics_count(MC_RESPAWN_RSS);
            replace(k);
            return 1;
        }
    }
    return 0;
}

/* The next time check_workers has something to look at (0: none). */
static double next_check(void)
{
    double t = cfg.workers_max_rss_mib ? next_rss : 0;
    for (int i = 0; cfg.workers_lifetime_s && i < nkids; i++) {
        double due = kids[i].born + 0.95 * cfg.workers_lifetime_s;
        if (kids[i].pid && !kids[i].asked && (t == 0 || due < t))
            t = due;
    }
    return t;
}

/* SIGTERM every worker and wait for them all.  After the kill timeout, or
 * at once on a second INT/TERM, the rest get SIGKILL.  Returns how many
 * were killed: then requests may have been cut off, and the exit status
 * says so to the supervisor. */
static int stop_all(void)
{
    double until = cfg.workers_kill_timeout_s ? clock_s() + cfg.workers_kill_timeout_s : 0;
    /* A second signal this soon is the same stop told twice, not a person
     * asking again: systemd signals every process of the unit at once, so
     * a parent that forwards its SIGTERM (the granian package) doubles it. */
    double merge = clock_s() + 0.25;
    int alive, killed = 0;

    log_info("Shutting down granc");
    notify("STOPPING=1");
    got_stop = 0;
    for (int i = 0; i < nkids; i++)
        if (kids[i].pid && !kids[i].asked)
            stop_worker(&kids[i]);
    for (;;) {
        reap();
        alive = 0;
        for (int i = 0; i < nkids; i++)
            alive += kids[i].pid != 0;
        if (!alive)
            return killed;
        if (got_stop && clock_s() < merge)
            got_stop = 0;
        if (!killed && (got_stop || (until > 0 && clock_s() >= until))) {
            log_warn("Killing %d worker(s) that did not stop", alive);
            for (int i = 0; i < nkids; i++)
                if (kids[i].pid)
                    kill(kids[i].pid, SIGKILL);
            killed = alive;
        }
        wait_events(killed ? 0 : until);
    }
}

static int serve(void)
{
    if (pipe2(tell, O_NONBLOCK | O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    for (int id = 1; id <= cfg.workers && !failed; id++)
        failed = !spawn(id);
    next_rss = clock_s() + cfg.rss_sample_interval_s;
    for (;;) {
        reap();
        if (got_stop || failed)
            break;
        if (got_hup) {
            got_hup = 0;
            rolling_restart();
        } else if (got_change) {
            got_change = 0;
            reload_all();
        } else if (!check_workers()) {
            wait_events(next_check());
        }
    }
    /* the listeners close before the workers are told: each takes what is
     * already queued on its copy and closes it, and from then on a new
     * connection is refused (a proxy retries it elsewhere) rather than
     * queued until the drain ends, to be reset */
    for (int i = 0; i < nls; i++)
        close(ls[i].fd);
    for (int i = nls; slot_ls && i < cfg.workers * nls; i++)
        close(slot_ls[i].fd);
    int killed = stop_all();
    metrics_close();
    if (watch)
        reload_close(watch);
    master_cleanup();
    if (killed)
        log_error("Exiting with status 1: %d worker(s) had to be killed", killed);
    return failed || killed;
}

/* Bind, fork, supervise; the exit status of the server. */
int master_run(const config *c)
{
    char err[512];

    cfg = *c;
    master_pid = getpid();
    signals_init();                 /* before the first fork: no signal slips by */
    notify_init();
    load_env_files(1);
    if (cfg.pid_file)
        pidfile_write();
    if (cfg.reload && !(watch = reload_open(&cfg, err, sizeof err)))
        die("%s", err);
    if (cfg.reload && (cfg.workers_lifetime_s || cfg.workers_max_rss_mib)) {
        log_info("--workers-lifetime and --workers-max-rss do not apply with --reload");
        cfg.workers_lifetime_s = cfg.workers_max_rss_mib = 0;
    }
    nls = net_listen(&cfg, ls, &slot_ls);
    nkids = cfg.workers + 1;
    if (!(kids = calloc((size_t)nkids, sizeof *kids)))
        die("out of memory");
    metrics_open(&cfg, nkids);
    if (cfg.process_name)
        proc_title("%s", cfg.process_name);
    return serve();
}
