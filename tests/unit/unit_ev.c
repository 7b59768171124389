/* tests/unit/unit_ev.c -- TAP tests for ev.c, linked with ev.c only.
 *
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -g -fsanitize=address,undefined \
 *      -I. tests/unit/unit_ev.c ev.c -o tests/unit/unit_ev
 */
#include "granc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define SETSIZE 64
#define WAIT_MS 1000            /* for events that are surely ready */

#define AREA_BYTES 1             /* no guarded inputs here */
#include "tap.h"
#include "ev.h"

/* What one callback saw; the probe is the udata, so a call reaching the
 * right probe shows that udata was passed through. */
typedef struct probe {
    int calls, fd, mask;
} probe;

static void on_event(ev_loop *loop, int fd, void *udata, int mask)
{
    probe *p = udata;

    (void)loop;
    p->calls++;
    p->fd = fd;
    p->mask = mask;
}

/* The stale-event scenario: two readable pipes; whichever callback runs
 * first ev_dels and closes the other's read end and, if reuse >= 0, puts
 * a new idle fd at that number for a new owner. */
static struct {
    int rfd[2];
    probe p[2], newowner;
    int done, reuse;
} st;

static void on_stale(ev_loop *loop, int fd, void *udata, int mask)
{
    int other = fd == st.rfd[0] ? st.rfd[1] : st.rfd[0];

    on_event(loop, fd, udata, mask);
    if (st.done++)
        return;
    ev_del(loop, other, EV_READ | EV_WRITE);
    close(other);
    if (st.reuse >= 0 && dup2(st.reuse, other) == other)
        ev_add(loop, other, EV_READ, on_event, &st.newowner);
}

static void stale_case(ev_loop *loop, int reuse)
{
    int a[2], b[2], n;

    memset(&st, 0, sizeof st);
    st.reuse = reuse;
    if (pipe(a) == -1 || pipe(b) == -1)
        return;
    st.rfd[0] = a[0];
    st.rfd[1] = b[0];
    (void)!write(a[1], "x", 1);
    (void)!write(b[1], "x", 1);
    ev_add(loop, a[0], EV_READ, on_stale, &st.p[0]);
    ev_add(loop, b[0], EV_READ, on_stale, &st.p[1]);
    n = ev_poll(loop, WAIT_MS);
    if (reuse < 0) {
        ok(n == 1 && st.p[0].calls + st.p[1].calls == 1,
           "stale guard: an fd closed earlier in the batch does not fire");
    } else {
        ok(n == 1 && st.newowner.calls == 0,
           "stale guard: an fd reused in the batch does not fire for its "
           "new owner");
    }
    /* whichever read end is still open: deregister and close it */
    for (int i = 0; i < 2; i++) {
        ev_del(loop, st.rfd[i], EV_READ | EV_WRITE);
        close(st.rfd[i]);
    }
    close(a[1]);
    close(b[1]);
}

static void on_alarm(int sig)
{
    (void)sig;
}

int main(void)
{
    ev_loop *loop = ev_create(SETSIZE);
    probe p, q;
    int fd[2], sv[2], spare[2], n;
    char buf[4096] = "";

    tap_begin();
    if (loop == NULL || pipe(fd) == -1 || pipe(spare) == -1) {
        printf("Bail out! ev_create or pipe failed: %s\n", strerror(errno));
        return 1;
    }
    ok((!strcmp(ev_backend(), "epoll") || !strcmp(ev_backend(), "kqueue")) &&
       ev_setsize(loop) == SETSIZE, "ev_backend and ev_setsize");

    /* reading */
    memset(&p, 0, sizeof p);
    ev_add(loop, fd[0], EV_READ, on_event, &p);
    ok(ev_poll(loop, 0) == 0 && p.calls == 0,
       "timeout 0 returns 0 with nothing ready");
    (void)!write(fd[1], "x", 1);
    n = ev_poll(loop, WAIT_MS);
    ok(n == 1 && p.calls == 1 && p.fd == fd[0] && p.mask == EV_READ,
       "a readable pipe fires READ with its udata");
    ev_del(loop, fd[0], EV_READ);
    memset(&p, 0, sizeof p);
    ok(ev_poll(loop, 0) == 0 && p.calls == 0, "ev_del stops events");
    (void)!read(fd[0], buf, sizeof buf);    /* drain, for the hang-up test */

    /* the registered mask */
    ev_add(loop, fd[0], EV_READ, on_event, &p);
    ok(ev_mask(loop, fd[0]) == EV_READ, "ev_mask after ev_add(READ)");
    ev_add(loop, fd[0], EV_WRITE, on_event, &p);
    ok(ev_mask(loop, fd[0]) == (EV_READ | EV_WRITE),
       "ev_mask after ev_add(WRITE) ORs the bits");
    ev_del(loop, fd[0], EV_WRITE);
    ok(ev_mask(loop, fd[0]) == EV_READ, "ev_mask after ev_del(WRITE)");
    ev_del(loop, fd[0], EV_READ | EV_WRITE);
    ok(ev_mask(loop, fd[0]) == EV_NONE, "ev_mask after ev_del of all bits");

    /* writing */
    memset(&p, 0, sizeof p);
    ev_add(loop, fd[1], EV_WRITE, on_event, &p);
    n = ev_poll(loop, WAIT_MS);
    ok(n == 1 && p.calls == 1 && p.fd == fd[1] && p.mask == EV_WRITE,
       "a writable pipe end fires WRITE");
    ev_del(loop, fd[1], EV_WRITE);

    /* both bits, one call (kqueue reports them as two kevents) */
    memset(&p, 0, sizeof p);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
        (void)!write(sv[1], "x", 1);
        ev_add(loop, sv[0], EV_READ | EV_WRITE, on_event, &p);
        n = ev_poll(loop, WAIT_MS);
        ev_del(loop, sv[0], EV_READ | EV_WRITE);
        close(sv[0]);
        close(sv[1]);
    }
    ok(n == 1 && p.calls == 1 && p.mask == (EV_READ | EV_WRITE),
       "READ and WRITE of one fd come in one call");

    /* hang-ups and errors */
    memset(&p, 0, sizeof p);
    ev_add(loop, fd[0], EV_READ, on_event, &p);
    close(fd[1]);
    n = ev_poll(loop, WAIT_MS);
    ok(n == 1 && p.calls == 1 && p.mask == EV_READ,
       "a peer hang-up shows up as READ");
    ev_del(loop, fd[0], EV_READ);
    close(fd[0]);

    memset(&p, 0, sizeof p);
    if (pipe(fd) == 0) {
        fcntl(fd[1], F_SETFL, O_NONBLOCK);
        while (write(fd[1], buf, sizeof buf) > 0)
            ;                   /* fill the pipe: no longer writable */
        ev_add(loop, fd[1], EV_WRITE, on_event, &p);
        n = ev_poll(loop, 0);
        close(fd[0]);           /* now the write end is in error */
        n = n * 10 + ev_poll(loop, WAIT_MS);
        ev_del(loop, fd[1], EV_WRITE);
        close(fd[1]);
    }
    ok(n == 1 && p.calls == 1 && p.mask == EV_WRITE,
       "a write end whose reader is gone fires WRITE (registered bits only)");

    stale_case(loop, -1);
    stale_case(loop, spare[0]);

    /* limits and flags */
    memset(&p, 0, sizeof p);
    errno = 0;
    ok(ev_add(loop, SETSIZE, EV_READ, on_event, &p) == -1 && errno == ERANGE &&
       ev_add(loop, -1, EV_READ, on_event, &p) == -1 &&
       ev_mask(loop, SETSIZE) == EV_NONE,
       "fd >= setsize is refused with ERANGE");

    memset(&q, 0, sizeof q);
    (void)!write(spare[1], "x", 1);
    n = ev_add(loop, spare[0], EV_READ | EV_EXCLUSIVE, on_event, &q);
    n = n == 0 && ev_mask(loop, spare[0]) == EV_READ ? ev_poll(loop, WAIT_MS)
                                                     : -1;
    ev_del(loop, spare[0], EV_READ);
    ok(n == 1 && q.calls == 1 && q.mask == EV_READ &&
       ev_mask(loop, spare[0]) == EV_NONE,
       "EV_EXCLUSIVE registers READ and stays out of ev_mask");

    /* at most maxevents per poll; the rest wait for the next (level) */
    {
        int pp[3][2], k, calls[3] = { 0 }, total;
        probe r[3];

        memset(r, 0, sizeof r);
        for (k = 0; k < 3; k++) {
            if (pipe(pp[k]) == -1)
                return 1;
            (void)!write(pp[k][1], "x", 1);
            ev_add(loop, pp[k][0], EV_READ, on_event, &r[k]);
        }
        ev_set_max_events(loop, 2);
        n = ev_poll(loop, WAIT_MS);
        total = n * 10 + ev_poll(loop, WAIT_MS);
        ev_set_max_events(loop, SETSIZE);
        for (k = 0; k < 3; k++) {
            calls[k] = r[k].calls;
            ev_del(loop, pp[k][0], EV_READ);
            close(pp[k][0]);
            close(pp[k][1]);
        }
        /* three ready, at most two a call: 2 then the other one or two */
        ok(n == 2 && (total == 21 || total == 22) && calls[0] && calls[1] && calls[2],
           "ev_set_max_events caps one poll; the rest come next time");
    }

    /* a signal during the wait */
    {
        struct sigaction sa;
        struct itimerval it = { .it_value = { .tv_usec = 20000 } };

        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sigaction(SIGALRM, &sa, NULL);
        memset(&p, 0, sizeof p);
        ev_add(loop, spare[0], EV_READ, on_event, &p);
        (void)!read(spare[0], buf, 1);   /* drain: nothing ready */
        setitimer(ITIMER_REAL, &it, NULL);
        n = ev_poll(loop, 5000);
        ok(n == 0 && errno == EINTR && p.calls == 0,
           "a signal cutting the wait short returns 0");
        ev_del(loop, spare[0], EV_READ);
    }

    close(spare[0]);
    close(spare[1]);
    ev_free(loop);
    return tap_end();
}
