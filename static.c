/* static.c -- --static-path-*: files under a route, served on the loop
 * thread before any Python, over HTTP/1.1 and HTTP/2 alike.
 *
 * A protocol asks static_match() when a request is ready and, if its path
 * falls under a route, gives it to static_iface instead of the app's
 * interface.  From there on the request's operations (req.h) are all this
 * file uses: it opens the file beneath the mount's directory, answers the
 * head (content-type, length, validators; 304, 206, 416, 404, 405), and
 * sends the bytes with r->ops->file without waiting: sendfile on plain
 * sockets, bounded chunks through TLS or HTTP/2 frames.  When the socket
 * is full it watches for EV_WRITE and goes on in the event hook; memory
 * stays flat however large the file and however slow the reader.
 *
 * Safe by construction: the decoded path may hold no NUL, backslash or
 * ".." segment, and it is resolved beneath the mount's descriptor by the
 * kernel (openat2 RESOLVE_BENEATH, no symlinks unless
 * --static-path-follow-symlinks) or by a component-wise openat(O_NOFOLLOW)
 * walk where the kernel lacks openat2.  Only regular files are served.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && defined(SYS_openat2)
#include <linux/openat2.h>
#endif
#include "static.h"
#include "ev.h"
#include "log.h"
#include "metrics.h"

#define PATH_MAX_DECODED 8192    /* longer decoded paths are not static (HTTP_MAX_TARGET) */
#define SEND_CHUNK  (1 << 20)    /* bytes asked of r->ops->file per call */

typedef struct mount {
    const char *route;           /* without its trailing '/' ("" for "/") */
    size_t rlen;
    int dfd;                     /* the directory, opened once per worker */
} mount;

static mount *mounts;
static int nmounts;
static const config *C;

int static_init(const config *cfg)
{
    C = cfg;
    int n = cfg->static_path_mount.n;
    if (!n) return 0;
    if (!(mounts = calloc((size_t)n, sizeof(*mounts)))) return -1;
    for (int i = 0; i < n; i++) {
        mount *m = &mounts[i];
        m->route = i < cfg->static_path_route.n ? cfg->static_path_route.v[i] : "/static";
        m->rlen = strlen(m->route);
        while (m->rlen && m->route[m->rlen - 1] == '/') m->rlen--;
        m->dfd = open(cfg->static_path_mount.v[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (m->dfd < 0) {
            log_error("--static-path-mount: %s: %s", cfg->static_path_mount.v[i], strerror(errno));
            return -1;
        }
    }
    nmounts = n;
    return 0;
}

/* The decoded path in buf, and the mount whose route it falls under (-1:
 * none); *rest is what follows the route. */
static int lookup(const http_request *rq, char *buf, slice *rest)
{
    if (!nmounts || rq->path.n > PATH_MAX_DECODED) return -1;
    size_t n = http_pct_decode(rq->path.p, rq->path.n, buf);
    for (int i = 0; i < nmounts; i++) {
        const mount *m = &mounts[i];
        if (n < m->rlen || memcmp(buf, m->route, m->rlen)) continue;
        if (n > m->rlen && buf[m->rlen] != '/') continue;    /* /staticfoo */
        *rest = (slice){ buf + m->rlen, n - m->rlen };
        return i;
    }
    return -1;
}

int static_match(const http_request *rq)
{
    static char buf[PATH_MAX_DECODED];
    slice rest;
    return nmounts && lookup(rq, buf, &rest) >= 0;
}

int static_rel_path(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    if (memchr(p, 0, n) || memchr(p, '\\', n)) return -1;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && p[j] != '/') j++;
        size_t k = j - i;
        if (k == 2 && p[i] == '.' && p[i + 1] == '.') return -1;
        if (k && !(k == 1 && p[i] == '.')) {
            if (o + k + 2 > cap) return -1;
            if (o) out[o++] = '/';
            memcpy(out + o, p + i, k);
            o += k;
        }
        i = j + 1;
    }
    if (!o) out[o++] = '.';
    out[o] = 0;
    return 0;
}

/* Open rel beneath dfd, read-only and without blocking (a FIFO). */
static int open_beneath(int dfd, const char *rel)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (C->static_path_follow_symlinks)     /* rel has no "..": only links leave */
        return openat(dfd, rel, flags);
#if defined(__linux__) && defined(SYS_openat2)
    struct open_how how = { .flags = (uint64_t)flags,
                            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS };
    long fd = syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS) return (int)fd;
#endif
    /* the kernel's walk, by hand: each component without following links */
    char buf[PATH_MAX_DECODED + 2];
    snprintf(buf, sizeof(buf), "%s", rel);
    int cur = dfd;
    for (char *p = buf, *slash; ; p = slash + 1) {
        slash = strchr(p, '/');
        if (slash) *slash = 0;
        int fd = openat(cur, p, flags | O_NOFOLLOW | (slash ? O_DIRECTORY : 0));
        if (cur != dfd) close(cur);
        if (fd < 0 || !slash) return fd;
        cur = fd;
    }
}

/* ---------------------------------------------------------------------
 * The response
 * ------------------------------------------------------------------- */

typedef struct sfile {
    int fd;                      /* the file, or -1 */
    int status;
    off_t off;                   /* the next byte of the file to go */
    int64_t left;                /* file bytes still to go */
    char *out;                   /* head bytes (HTTP/1.1) and a short body */
    size_t on, ooff;
    int64_t since;               /* ms: output last moved */
    int watching;                /* EV_WRITE asked for: stop asking at the end */
} sfile;

static const struct { const char *ext, *type; } types[] = {
    { "html", "text/html" }, { "htm", "text/html" }, { "css", "text/css" },
    { "js", "text/javascript" }, { "mjs", "text/javascript" },
    { "json", "application/json" }, { "txt", "text/plain" }, { "xml", "application/xml" },
    { "svg", "image/svg+xml" }, { "png", "image/png" }, { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" }, { "gif", "image/gif" }, { "webp", "image/webp" },
    { "avif", "image/avif" }, { "ico", "image/x-icon" }, { "woff", "font/woff" },
    { "woff2", "font/woff2" }, { "ttf", "font/ttf" }, { "otf", "font/otf" },
    { "pdf", "application/pdf" }, { "wasm", "application/wasm" }, { "mp4", "video/mp4" },
    { "webm", "video/webm" }, { "mp3", "audio/mpeg" }, { "ogg", "audio/ogg" },
    { "wav", "audio/wav" }, { "zip", "application/zip" }, { "gz", "application/gzip" },
    { "map", "application/json" }, { "csv", "text/csv" }, { "md", "text/markdown" },
    { "pem", "application/x-x509-ca-cert" }, { "webmanifest", "application/manifest+json" },
    { "tar", "application/x-tar" }, { "bin", "application/octet-stream" },
};

static const char *content_type(const char *name)
{
    const char *base = strrchr(name, '/'), *dot;
    dot = strrchr(base ? base : name, '.');
    if (!dot) return NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcasecmp(dot + 1, types[i].ext)) return types[i].type;
    return NULL;
}

static const char wday[][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char mon[][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* IMF-fixdate, locale-free (out: 64 bytes; 29 used). */
static void fmt_date(time_t t, char *out)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d GMT", wday[tm.tm_wday], tm.tm_mday,
             mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* An IMF-fixdate, or -1. */
static time_t parse_date(slice v)
{
    char buf[64], m[4];
    struct tm tm = { 0 };
    if (v.n >= sizeof(buf)) return -1;
    memcpy(buf, v.p, v.n);
    buf[v.n] = 0;
    if (sscanf(buf, "%*3s, %d %3s %d %d:%d:%d GMT", &tm.tm_mday, m, &tm.tm_year, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    for (tm.tm_mon = 0; tm.tm_mon < 12 && strcmp(m, mon[tm.tm_mon]); tm.tm_mon++) {}
    if (tm.tm_mon == 12) return -1;
    tm.tm_year -= 1900;
    return timegm(&tm);
}

static const slice *header(request *r, const char *name)
{
    const http_header *h = http_find_header(r->head, name, 0);
    return h ? &h->value : NULL;
}

/* An entity-tag list (If-None-Match: weak comparison) holds etag? */
static int etag_in(slice list, const char *etag)
{
    size_t n = strlen(etag);
    for (slice rest = list, e; http_list_next(&rest, &e);) {
        if (e.n == 1 && e.p[0] == '*') return 1;
        if (e.n > 2 && e.p[0] == 'W' && e.p[1] == '/') { e.p += 2; e.n -= 2; }
        if (e.n == n && !memcmp(e.p, etag, n)) return 1;
    }
    return 0;
}

/* One "bytes=a-b", "a-" or "-n" range of a file of size bytes: 1 with
 * [*a, *b] set, 0 when it is to be ignored (bad syntax, several ranges:
 * the whole file), -1 when unsatisfiable. */
static int parse_range(slice v, int64_t size, int64_t *a, int64_t *b)
{
    if (v.n < 7 || strncasecmp(v.p, "bytes=", 6) || memchr(v.p, ',', v.n)) return 0;
    const char *p = v.p + 6, *end = v.p + v.n;
    int64_t x = -1, y = -1;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (x > (INT64_MAX - 9) / 10) return 0;
        x = (x < 0 ? 0 : x * 10) + (*p - '0');
    }
    if (p == end || *p++ != '-') return 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (y > (INT64_MAX - 9) / 10) return 0;
        y = (y < 0 ? 0 : y * 10) + (*p - '0');
    }
    if (p != end || (x < 0 && y < 0) || (x >= 0 && y >= 0 && y < x)) return 0;
    if (x < 0) {                                /* the last y bytes */
        if (y == 0 || size == 0) return -1;
        *a = y >= size ? 0 : size - y;
        *b = size - 1;
        return 1;
    }
    if (x >= size) return -1;
    *a = x;
    *b = y < 0 || y >= size ? size - 1 : y;
    return 1;
}

/* Decide the answer and put its head out (r->ops->head): s->fd is open
 * when file bytes follow.  -1 when the head could not be made. */
static int prepare(request *r, sfile *s)
{
    static char buf[PATH_MAX_DECODED], rel[PATH_MAX_DECODED + 2];
    char lm[64], etag[64], cc[40], crange[80];
    http_header f[8];
    size_t nf = 0;
    const char *body = NULL;
    int64_t size = 0, a = 0, b = -1, total = 0;
    slice rest;
    const slice *h;
    struct stat st;
#define FIELD(name, val) f[nf++] = (http_header){ { name, sizeof(name) - 1 }, { val, strlen(val) } }
    int mi = lookup(r->head, buf, &rest);
    slice m = r->head->method;
    int get = m.n == 3 && !memcmp(m.p, "GET", 3), head = m.n == 4 && !memcmp(m.p, "HEAD", 4);
    if (!get && !head) {
        s->status = 405;
        FIELD("allow", "GET, HEAD");
        goto answer;
    }
    s->status = 404;
    body = "Not found";
    if (mi < 0 || static_rel_path(rest.p, rest.n, rel, sizeof(rel)) < 0) goto answer;
    if ((s->fd = open_beneath(mounts[mi].dfd, rel)) < 0 || fstat(s->fd, &st) < 0) goto answer;
    if (S_ISDIR(st.st_mode) && C->static_path_dir_to_file) {
        int d = s->fd;
        s->fd = strchr(C->static_path_dir_to_file, '/') ? -1
                : open_beneath(d, C->static_path_dir_to_file);
        close(d);
        if (s->fd < 0 || fstat(s->fd, &st) < 0) goto answer;
        snprintf(rel, sizeof(rel), "%s", C->static_path_dir_to_file);
    }
    if (!S_ISREG(st.st_mode)) goto answer;
    body = NULL;
    size = st.st_size;
    fmt_date(st.st_mtime, lm);
    snprintf(etag, sizeof(etag), "\"%llx-%llx-%llx\"", (unsigned long long)size,
             (unsigned long long)st.st_mtime, (unsigned long long)st.st_ino);
    const char *type = content_type(rel);
    if (type) f[nf++] = (http_header){ { "content-type", 12 }, { type, strlen(type) } };
    FIELD("last-modified", lm);
    FIELD("etag", etag);
    FIELD("accept-ranges", "bytes");
    if (C->static_path_expires_s) {
        snprintf(cc, sizeof(cc), "max-age=%d", C->static_path_expires_s);
        FIELD("cache-control", cc);
    }
    /* RFC 9110 13.2.2: If-None-Match, else If-Modified-Since; then Range */
    if ((h = header(r, "if-none-match"))) {
        if (etag_in(*h, etag)) { s->status = 304; goto answer; }
    } else if ((h = header(r, "if-modified-since"))) {
        time_t t = parse_date(*h);
        if (t >= 0 && st.st_mtime <= t) { s->status = 304; goto answer; }
    }
    s->status = 200;
    a = 0;
    b = size - 1;
    if ((h = header(r, "range"))) {
        const slice *ir = header(r, "if-range");
        int apply = 1;
        if (ir)
            apply = ir->n && ir->p[0] == '"'
                    ? ir->n == strlen(etag) && !memcmp(ir->p, etag, ir->n)
                    : parse_date(*ir) == st.st_mtime;
        int k = apply ? parse_range(*h, size, &a, &b) : 0;
        if (k < 0) {
            s->status = 416;
            snprintf(crange, sizeof(crange), "bytes */%lld", (long long)size);
            FIELD("content-range", crange);
            a = 0;
            b = -1;
        } else if (k > 0) {
            s->status = 206;
            snprintf(crange, sizeof(crange), "bytes %lld-%lld/%lld", (long long)a,
                     (long long)b, (long long)size);
            FIELD("content-range", crange);
        } else {
            a = 0;
            b = size - 1;
        }
    }
    s->off = a;
    s->left = b - a + 1;
    total = s->left;
answer:
    if (body) M_ADD(static_requests_err, 1);
    if (s->status != 200 && s->status != 206 && s->fd >= 0) { close(s->fd); s->fd = -1; }
    if (body) total = (int64_t)strlen(body);
    if (s->status == 405 || s->status == 416) total = 0;
    if (s->status == 304) total = -1;
    if (s->status == 404) {
        FIELD("content-type", "text/plain");
        log_info("Request static file %.*s not found", (int)r->head->path.n, r->head->path.p);
    }
    r->res.code = s->status;
    struct iovec out, pre, post;
    if (r->ops->head(r, NULL, 0, f, nf, total, &out) < 0) return -1;
    size_t bn = body && !r->res.nobody ? strlen(body) : 0;
    if (out.iov_len + bn) {
        if (!(s->out = malloc(out.iov_len + bn))) return -1;
        if (out.iov_len) memcpy(s->out, out.iov_base, out.iov_len);
        if (bn) memcpy(s->out + out.iov_len, body, bn);
        s->on = out.iov_len + bn;
    }
    int64_t framed = (int64_t)r->ops->frame(r, total > 0 ? (size_t)total : 0, &pre, &post);
    if (s->fd >= 0) s->left = framed;           /* 0 for HEAD */
    return 0;
#undef FIELD
}

static void finish(request *r, sfile *s, int inline_call)
{
    struct iovec v;
    if (!r->broken) r->ops->end(r, NULL, 0, &v);   /* no trailers: nothing to write */
    if (s->fd >= 0) close(s->fd);
    free(s->out);
    int status = s->status;
    free(s);
    r->app = NULL;
    r->ops->finish(r, status, 0);
    if (!inline_call) r->ops->done(r);
}

/* Send what the socket takes.  Returns 1 when the request is over
 * (finished: handed back unless inline_call), 0 when waiting for EV_WRITE. */
static int pump(request *r, sfile *s, int inline_call)
{
    while (!r->broken) {
        ssize_t w;
        if (s->ooff < s->on) {
            struct iovec v = { s->out + s->ooff, s->on - s->ooff };
            if ((w = r->ops->write(r, &v, 1, 0)) > 0) s->ooff += (size_t)w;
        } else if (s->left > 0) {
            size_t n = s->left < SEND_CHUNK ? (size_t)s->left : SEND_CHUNK;
            if ((w = r->ops->file(r, s->fd, &s->off, n, 0)) > 0) s->left -= w;
        } else {
            break;
        }
        if (w < 0) { r->broken = 1; break; }
        if (w == 0) {
            r->ops->watch(r, EV_WRITE);
            s->watching = 1;
            if (!r->broken) return 0;
        }
        s->since = clock_ms();
    }
    if (s->watching) r->ops->watch(r, 0);   /* (not watched: two epoll_ctl saved) */
    finish(r, s, inline_call);
    return 1;
}

static int st_start(request *r)
{
    sfile *s = calloc(1, sizeof(*s));
    M_ADD(static_requests_handled, 1);
    if (!s) {
        r->ops->abort(r);
        r->ops->finish(r, 500, 0);
        return 1;
    }
    s->fd = -1;
    s->since = clock_ms();
    r->app = s;
    if (prepare(r, s) < 0) {
        r->ops->abort(r);
        r->broken = 1;
    }
    return pump(r, s, 1);
}

static void st_event(request *r, int mask)
{
    (void)mask;
    if (r->app) pump(r, r->app, 0);
}

/* A reader that takes nothing for the I/O timeout is cut. */
static void st_sweep(request *r, int64_t now, int64_t timeout_ms)
{
    sfile *s = r->app;
    if (!s || now - s->since < timeout_ms) return;
    r->ops->abort(r);
    r->ops->watch(r, 0);
    finish(r, s, 0);
}

const app_iface static_iface = {
    .name = "static", .start = st_start, .event = st_event, .sweep = st_sweep,
};
