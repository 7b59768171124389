/* net.c -- the network's edges: the listeners the master binds (TCP,
 * SO_REUSEPORT slots, Unix sockets, inherited and systemd descriptors),
 * and --forwarded-allow-ips: the proxies whose X-Forwarded-For and
 * X-Forwarded-Proto granc believes, and what they say.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "log.h"
#include "net.h"
#include "http.h"

typedef struct trust_net {
    int family;                  /* AF_INET or AF_INET6 */
    unsigned char ip[16];
    int bits;                    /* prefix length */
} trust_net;

static trust_net *trusted;
static int ntrusted, trust_any, trust_unix;

static int trust_add(const char *s)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    trust_net t = { 0 };
    if (!strcmp(s, "*")) return trust_any = 1;
    if (!strcmp(s, "unix")) return trust_unix = 1;
    if (n >= sizeof(ip)) return -1;
    memcpy(ip, s, n);
    ip[n] = 0;
    t.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(t.family, ip, t.ip) != 1) return -1;
    int max = t.family == AF_INET ? 32 : 128;
    char *end;
    long bits = slash ? strtol(slash + 1, &end, 10) : max;
    if (slash && (!slash[1] || *end || bits < 0 || bits > max)) return -1;
    t.bits = (int)bits;
    trust_net *g = realloc(trusted, sizeof(*g) * (size_t)(ntrusted + 1));
    if (!g) return -1;
    trusted = g;
    trusted[ntrusted++] = t;
    return 0;
}

int proxy_trust_init(const strlist *l, char *bad, size_t badlen)
{
    for (int i = 0; i < l->n; i++) {
        char *copy = strdup(l->v[i]), *save = NULL;
        if (!copy) return -1;
        for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
            if (trust_add(tok) < 0) {
                snprintf(bad, badlen, "%s", tok);
                free(copy);
                return -1;
            }
        free(copy);
    }
    return 0;
}

static int trust_peer(const char *addr, int family)
{
    unsigned char ip[16];
    if (trust_any) return 1;
    if (family == AF_UNIX) return trust_unix;
    if (!*addr) return 0;
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, addr, ip) != 1) return 0;
    if (fam == AF_INET6 && !memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
        memmove(ip, ip + 12, 4);        /* ::ffff:a.b.c.d is an IPv4 peer */
        fam = AF_INET;
    }
    for (int i = 0; i < ntrusted; i++) {
        const trust_net *t = &trusted[i];
        int b = t->bits;
        if (t->family != fam) continue;
        if (memcmp(ip, t->ip, (size_t)(b / 8))) continue;
        if (b % 8 && ((ip[b / 8] ^ t->ip[b / 8]) & (0xff00 >> (b % 8)) & 0xff)) continue;
        return 1;
    }
    return 0;
}

int proxy_trusted(const char *addr, int family)
{
    return (ntrusted || trust_any || trust_unix) && trust_peer(addr, family);
}

/* The value of the last field named `lower` (a list's rightmost line),
 * or an empty slice. */
static slice header(const http_request *rq, const char *lower)
{
    const http_header *h = http_find_header(rq, lower, 1);
    return h ? h->value : (slice){ "", 0 };
}

/* fwd = s as a C string (s is shorter than PROXY_ADDR_MAX). */
static void set_addr(char fwd[PROXY_ADDR_MAX], slice s)
{
    memcpy(fwd, s.p, s.n);
    fwd[s.n] = 0;
}

/* What a trusted proxy says of the client, as uvicorn reads it: in
 * X-Forwarded-For the rightmost address that is not itself a trusted
 * proxy (the leftmost if all are); X-Forwarded-Proto's last value. */
void proxy_forwarded(const http_request *rq, char fwd[PROXY_ADDR_MAX], signed char *proto)
{
    slice rest = header(rq, "x-forwarded-for"), e, first = { "", 0 }, client = { "", 0 };

    /* Left to right: the last untrusted address seen is the rightmost. */
    while (http_list_next(&rest, &e)) {
        if (e.n >= PROXY_ADDR_MAX) continue;    /* too long for an address */
        set_addr(fwd, e);                       /* trust_peer takes a C string */
        if (!first.n) first = e;
        if (!trust_peer(fwd, AF_INET)) client = e;
    }
    set_addr(fwd, client.n ? client : first);

    slice last = { "", 0 };
    for (rest = header(rq, "x-forwarded-proto"); http_list_next(&rest, &e);) last = e;
    if (http_name_is(last, "https") || http_name_is(last, "wss")) *proto = 1;
    else if (http_name_is(last, "http") || http_name_is(last, "ws")) *proto = -1;
    else *proto = 0;
}

/* ===================================================================
 * Listeners: bound (or inherited) by the master before it forks
 * =================================================================== */

#define NAME(name) opt_label(name)  /* the flag or variable that set it */

static const config *cfg;           /* net_listen's */
static listener *ls;
static int nls;
static listener *slot_ls;
static const char *uds_bound;       /* the socket file we created */

/* Workers accept from an event loop and inherit the socket across fork:
 * non-blocking, FD_CLOEXEC off. */
static void listen_ready(int fd, const char *what)
{
    if (listen(fd, cfg->backlog) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0
        || fcntl(fd, F_SETFD, 0) < 0)
        die("%s: listen: %s", what, strerror(errno));
}

/* The address and port fields of an IPv4 or IPv6 socket address. */
static void *ip_of(struct sockaddr_storage *sa, uint16_t **port)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

    *port = sa->ss_family == AF_INET ? &s4->sin_port : &s6->sin6_port;
    return sa->ss_family == AF_INET ? (void *)&s4->sin_addr : (void *)&s6->sin6_addr;
}

/* One more SO_REUSEPORT socket per address for workers 2..N, on the
 * address and port the first one got. */
static void bind_slots(void)
{
    int one = 1;

    if (!(slot_ls = calloc((size_t)cfg->workers * (size_t)nls, sizeof *slot_ls)))
        die("out of memory");
    memcpy(slot_ls, ls, (size_t)nls * sizeof *ls);
    for (int w = 1; w < cfg->workers; w++)
        for (int i = 0; i < nls; i++) {
            listener *l = &slot_ls[w * nls + i];
            struct sockaddr_storage sa;
            socklen_t salen = sizeof sa;
            int v6 = 0, fd;
            socklen_t vl = sizeof v6;
            *l = ls[i];
            getsockname(ls[i].fd, (struct sockaddr *)&sa, &salen);
            if (ls[i].family == AF_INET6)
                getsockopt(ls[i].fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, &vl);
            if ((fd = socket(ls[i].family, SOCK_STREAM, 0)) < 0)
                die("%s: socket: %s", NAME("host"), strerror(errno));
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
            if (ls[i].family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6);
            if (bind(fd, (struct sockaddr *)&sa, salen) < 0)
                die("%s/%s: cannot bind %s:%d again for worker %d: %s", NAME("host"),
                    NAME("port"), ls[i].addr, ls[i].port, w + 1, strerror(errno));
            listen_ready(fd, "--host/--port");
            l->fd = fd;
        }
}

/* Bind every distinct address of the host (localhost may give 127.0.0.1 and
 * ::1).  One socket per address is shared by all workers, not one
 * SO_REUSEPORT socket each: queued connections then survive a rolling
 * restart, and --port 0 yields a single port. */
static void bind_tcp(void)
{
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                              .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res, *ai;
    char port[16];
    int err, has4 = 0, one = 1;

    snprintf(port, sizeof port, "%d", cfg->port);
    if ((err = getaddrinfo(cfg->host, port, &hints, &res)))
        die("%s: %s: %s", NAME("host"), cfg->host, gai_strerror(err));
    for (ai = res; ai; ai = ai->ai_next)
        has4 |= ai->ai_family == AF_INET;
    for (ai = res; ai && nls < MAX_LISTENERS; ai = ai->ai_next) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        listener *l = &ls[nls];
        const char *lb = ai->ai_family == AF_INET6 ? "[" : "";
        const char *rb = ai->ai_family == AF_INET6 ? "]" : "";
        uint16_t *pp;
        void *ip;
        int fd, dup = 0;

        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
        ip = ip_of(&sa, &pp);
        inet_ntop(ai->ai_family, ip, l->addr, sizeof l->addr);
        for (int j = 0; j < nls; j++)
            dup |= !strcmp(ls[j].addr, l->addr);
        if (dup)
            continue;
        if (nls > 0 && cfg->port == 0)   /* all addresses on the port we got */
            *pp = htons((uint16_t)ls[0].port);
        if ((fd = socket(ai->ai_family, SOCK_STREAM, 0)) < 0)
            die("%s: %s: socket: %s", NAME("host"), l->addr, strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (cfg->workers > 1)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        /* "::" alone stays dual-stack; next to an IPv4 address of the same
         * name it must leave the IPv4 side to that socket. */
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &has4, sizeof has4);
        if (bind(fd, (struct sockaddr *)&sa, ai->ai_addrlen) < 0)
            die("%s/%s: cannot bind %s%s%s:%d: %s", NAME("host"), NAME("port"), lb, l->addr, rb,
                  ntohs(*pp), strerror(errno));
        listen_ready(fd, "--host/--port");
        getsockname(fd, (struct sockaddr *)&sa, &salen);
        l->fd = fd;
        l->family = ai->ai_family;
        l->port = ntohs(*pp);
        nls++;
        log_info("Listening at: %s://%s%s%s:%d", cfg->ssl_certificate ? "https" : "http",
                 lb, l->addr, rb, l->port);
    }
    freeaddrinfo(res);
    if (nls == 0)
        die("%s: %s: no IPv4 or IPv6 address", NAME("host"), cfg->host);
    if (cfg->workers > 1)
        bind_slots();
}

/* A socket file left by a crashed server refuses connections: replace it.
 * A live one, or a file that is not a socket, belongs to someone else. */
static void bind_uds(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(cfg->uds) >= sizeof sa.sun_path)
        die("%s: path longer than %zu bytes", NAME("uds"), sizeof sa.sun_path - 1);
    strcpy(sa.sun_path, cfg->uds);
    if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
        die("%s: socket: %s", NAME("uds"), strerror(errno));
    if (lstat(cfg->uds, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            die("%s: %s exists and is not a socket", NAME("uds"), cfg->uds);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            die("%s: %s is in use by a running server", NAME("uds"), cfg->uds);
        if (errno != ECONNREFUSED)
            die("%s: %s: %s", NAME("uds"), cfg->uds, strerror(errno));
        unlink(cfg->uds);
        close(fd);                  /* a failed connect leaves it unusable */
        if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
            die("%s: socket: %s", NAME("uds"), strerror(errno));
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("%s: cannot bind %s: %s", NAME("uds"), cfg->uds, strerror(errno));
    uds_bound = cfg->uds;
    if (cfg->uds_permissions >= 0 && chmod(cfg->uds, (mode_t)cfg->uds_permissions) < 0)
        die("%s: chmod %s: %s", NAME("uds-permissions"), cfg->uds, strerror(errno));
    listen_ready(fd, "--uds");
    ls[0] = (listener){ .fd = fd, .family = AF_UNIX, .port = 0 };
    snprintf(ls[0].addr, sizeof ls[0].addr, "%s", cfg->uds);
    nls = 1;
    log_info("Listening at: unix:%s", cfg->uds);
}

/* An inherited listening socket (--fd, or systemd's LISTEN_FDS): the
 * address is whatever it is bound to; --host, --port and --uds are moot. */
static void inherit(int fd, const char *what)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa, il = sizeof(int);
    listener *l = &ls[nls];
    int type = 0, acc = 0;
    uint16_t *pp;

    if (nls == MAX_LISTENERS)
        die("%s: more than %d sockets", what, MAX_LISTENERS);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &il) < 0 || type != SOCK_STREAM
        || getsockname(fd, (struct sockaddr *)&sa, &salen) < 0)
        die("%s: descriptor %d is not a stream socket", what, fd);
    il = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &il);
    if (!acc)                           /* bound but not listening yet */
        listen_ready(fd, what);
    else if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, 0) < 0)
        die("%s: descriptor %d: %s", what, fd, strerror(errno));
    l->fd = fd;
    l->family = sa.ss_family;
    if (sa.ss_family == AF_UNIX) {
        struct sockaddr_un *su = (struct sockaddr_un *)&sa;
        snprintf(l->addr, sizeof l->addr, "%.*s", (int)sizeof l->addr - 1,
                 su->sun_path[0] ? su->sun_path : "@");
        log_info("Listening at: unix:%s", l->addr);
    } else if (sa.ss_family == AF_INET || sa.ss_family == AF_INET6) {
        inet_ntop(sa.ss_family, ip_of(&sa, &pp), l->addr, sizeof l->addr);
        l->port = ntohs(*pp);
        log_info("Listening at: %s://%s%s%s:%d", cfg->ssl_certificate ? "https" : "http",
                 sa.ss_family == AF_INET6 ? "[" : "", l->addr,
                 sa.ss_family == AF_INET6 ? "]" : "", l->port);
    } else {
        die("%s: descriptor %d is not an IP or Unix socket", what, fd);
    }
    log_debug("Using inherited descriptor %d (%s)", fd, what);
    nls++;
}

/* systemd socket activation (sd_listen_fds(3)): descriptors 3.. when
 * LISTEN_PID is ours.  The variables are removed so that the workers'
 * applications do not take the sockets for theirs.  1 if it applied. */
static int listen_fds(void)
{
    const char *p = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
    long pid = p ? atol(p) : 0, count = n ? atol(n) : 0;

    if (!p || !n || pid != (long)getpid())
        return 0;
    if (count < 1 || count > MAX_LISTENERS)
        die("LISTEN_FDS: must be 1..%d (got \"%s\")", MAX_LISTENERS, n);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    for (int i = 0; i < count; i++)
        inherit(3 + i, "LISTEN_FDS");
    return 1;
}

/* With TCP and several workers, each worker id has its own SO_REUSEPORT
 * socket per address (the kernel spreads connections over them), owned by
 * the master: a worker that is replaced hands its socket, and the
 * connections queued on it, to its successor. */
int net_listen(const config *c, listener out[MAX_LISTENERS], listener **slots)
{
    cfg = c;
    ls = out;
    nls = 0;
    if (cfg->fd >= 0)
        inherit(cfg->fd, NAME("fd"));
    else if (!listen_fds() && cfg->uds)
        bind_uds();
    else if (!nls)
        bind_tcp();
    *slots = slot_ls;
    return nls;
}

void net_cleanup(void)
{
    if (uds_bound)
        unlink(uds_bound);
    uds_bound = NULL;
}
