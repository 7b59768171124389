/* reload.c -- --reload: watch the source trees, tell the master when a file changed.
 *
 * Two back ends, chosen at compile time: inotify on Linux (a watch per
 * directory, added as directories appear), elsewhere a stat() scan of the
 * trees at every call (RELOAD_POLL forces it, for the tests).  Both note
 * changes in one list, which reload_changed lets settle and logs as
 * Granian does with watchfiles ("Modified: /abs/path").
 *
 * The filter is watchfiles' DefaultFilter: a path is ignored when one of
 * its components is an ignored directory name, when its last component
 * matches an ignored pattern (re.search, here POSIX ERE), or when it
 * starts with an ignored path.  The first and the last rule prune whole
 * trees: those are never watched nor scanned.
 */
#include "granc.h"
#include "log.h"
#include "reload.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__) && !defined(RELOAD_POLL)
#define RELOAD_INOTIFY
#include <sys/inotify.h>
#elif defined(__APPLE__)
#define st_mtim st_mtimespec
#endif

#define RELOAD_SETTLE_MS 1600   /* watchfiles' debounce: the longest a burst is awaited */
#define RELOAD_LOG_MAX   20     /* paths logged per reload, then "... and N more" */
#define RELOAD_KEEP      1000   /* distinct paths kept per reload (the dedup is linear) */

enum { CH_ADDED, CH_MODIFIED, CH_DELETED };
static const char *const ch_name[] = { "Added", "Modified", "Deleted" };
static const char *const default_dirs[] = {
    "__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", ".idea", "node_modules",
    ".mypy_cache", ".pytest_cache", ".hypothesis" };
/* DefaultFilter's patterns, spelled for POSIX ERE (Python's "\#" is "#"). */
static const char *const default_res[] = {
    "\\.py[cod]$", "\\.___jb_...___$", "\\.sw.$", "~$", "^\\.#", "^\\.DS_Store$", "^flycheck_" };
#define NELEM(a) (int)(sizeof a / sizeof a[0])

typedef struct change {
    int kind;                        /* CH_* */
    char *path;                      /* owned */
} change;

#ifndef RELOAD_INOTIFY
typedef struct stamp {
    char *path;                      /* owned */
    struct timespec mtime;
    off_t size;
    ino_t ino;
} stamp;
#endif

struct reload_watch {
    int fd;                          /* inotify descriptor, or -1: scan with stat() */
    int tick_ms;
    char **roots, **skip;            /* --reload-paths, --reload-ignore-paths, resolved */
    int nroots, nskip;
    const strlist *dirs;             /* --reload-ignore-dirs (the config outlives us) */
    regex_t *re;                     /* the default patterns, then the user's */
    int nre;
    change *ch;                      /* RELOAD_KEEP slots: the changes not reported yet */
    int nch, more;                   /* more: changes past RELOAD_KEEP */
#ifdef RELOAD_INOTIFY
    char **wd;                       /* by watch descriptor: its directory, owned */
    int nwd, werr;                   /* werr: the first errno of inotify_add_watch */
#else
    stamp *snap, *next;              /* the last scan, sorted by path; the one being made */
    int nsnap, nnext, capnext, primed;
#endif
};

static int dir_is(const char *const *v, int n, const char *p, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(v[i]) == len && !memcmp(v[i], p, len))
            return 1;
    return 0;
}

/* 1: under an ignored directory or path (prune it); 2: the name matches
 * an ignored pattern; 0: the path counts. */
static int filtered(const reload_watch *w, const char *path)
{
    const char *p, *e, *name = path;

    for (p = path; *p; p = e + !!*e) {
        if ((e = p + strcspn(p, "/")) == p)
            continue;
        if (dir_is(default_dirs, NELEM(default_dirs), p, (size_t)(e - p))
            || dir_is(w->dirs->v, w->dirs->n, p, (size_t)(e - p)))
            return 1;
        name = p;
    }
    for (int i = 0; i < w->nskip; i++)
        if (!strncmp(path, w->skip[i], strlen(w->skip[i])))
            return 1;
    for (int i = 0; i < w->nre; i++)
        if (!regexec(&w->re[i], name, 0, NULL, 0))
            return 2;
    return 0;
}

/* Is path prefix itself or below it? */
static int under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);

    return !strncmp(path, prefix, n) && (!path[n] || path[n] == '/' || prefix[n - 1] == '/');
}

static int in_roots(const reload_watch *w, const char *path)
{
    for (int i = 0; i < w->nroots; i++)
        if (under(path, w->roots[i]))
            return 1;
    return 0;
}

/* Remember a change for the next report.  1 if it counts, even for a path
 * noted already: the burst goes on. */
static int note(reload_watch *w, int kind, const char *path)
{
    if (!in_roots(w, path) || filtered(w, path))
        return 0;
    for (int i = 0; i < w->nch; i++)
        if (!strcmp(w->ch[i].path, path)) {
            if (kind == CH_DELETED || w->ch[i].kind == CH_DELETED)
                w->ch[i].kind = kind;   /* but an added file stays added */
            return 1;
        }
    char *copy = w->nch < RELOAD_KEEP ? strdup(path) : NULL;
    if (copy)
        w->ch[w->nch++] = (change){ kind, copy };
    else
        w->more++;
    return 1;
}

typedef void visit_fn(reload_watch *w, const char *path, const struct stat *st, int root);

/* Visit path (a PATH_MAX buffer, extended in place) and what is under it
 * but what the filter prunes.  Below a root, symbolic links are not
 * followed: they could loop. */
static void walk(reload_watch *w, char *path, visit_fn *visit, int root)
{
    size_t len = strlen(path), at = len + (path[len - 1] != '/');
    struct dirent *de;
    struct stat st;
    DIR *d;

    if ((root ? stat(path, &st) : lstat(path, &st)) || filtered(w, path) == 1)
        return;
    visit(w, path, &st, root);
    if (!S_ISDIR(st.st_mode) || !(d = opendir(path)))
        return;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")
            && at + strlen(de->d_name) < PATH_MAX) {
            path[at - 1] = '/';
            strcpy(path + at, de->d_name);
            walk(w, path, visit, 0);
        }
    path[len] = '\0';
    closedir(d);
}

#ifdef RELOAD_INOTIFY
#define WATCH_MASK (IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_CREATE | IN_DELETE \
                    | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

static void add_watch(reload_watch *w, const char *dir)
{
    int wd = inotify_add_watch(w->fd, dir, WATCH_MASK);

    if (wd < 0) {               /* a directory gone meanwhile is no error */
        if (errno != ENOENT && errno != EACCES && errno != ENOTDIR && !w->werr)
            log_warn("--reload: cannot watch %s: %s", dir, strerror(w->werr = errno));
        return;
    }
    if (wd >= w->nwd) {
        char **v = realloc(w->wd, (size_t)(wd + 64) * sizeof *v);
        if (!v) return;
        memset(v + w->nwd, 0, (size_t)(wd + 64 - w->nwd) * sizeof *v);
        w->wd = v, w->nwd = wd + 64;
    }
    free(w->wd[wd]);            /* an inode seen again (moved, or two roots) */
    w->wd[wd] = strdup(dir);
}

/* Directories get a watch; a file named by --reload-paths is watched
 * through its directory, so that an editor's rename over it is seen
 * (note() drops its neighbours). */
static void visit_watch(reload_watch *w, const char *path, const struct stat *st, int root)
{
    char dir[PATH_MAX], *slash;

    if (S_ISDIR(st->st_mode))
        add_watch(w, path);
    else if (root && (slash = strrchr(strcpy(dir, path), '/'))) {
        slash[slash == dir] = '\0';        /* "/f" -> "/", "/d/f" -> "/d" */
        add_watch(w, dir);
    }
}

static int event(reload_watch *w, const struct inotify_event *ev)
{
    char path[PATH_MAX];
    int m = (int)ev->mask;

    if (m & IN_Q_OVERFLOW)      /* events were lost: assume the worst */
        return note(w, CH_MODIFIED, w->roots[0]), 1;
    if (ev->wd < 0 || ev->wd >= w->nwd || !w->wd[ev->wd])
        return 0;
    if (m & IN_IGNORED) {       /* the watch is gone */
        free(w->wd[ev->wd]);
        return w->wd[ev->wd] = NULL, 0;
    }
    if (!ev->len) {             /* the directory itself; moved, its path is stale */
        if (m & IN_MOVE_SELF)
            inotify_rm_watch(w->fd, ev->wd);
        return m & (IN_DELETE_SELF | IN_MOVE_SELF) ? note(w, CH_DELETED, w->wd[ev->wd]) : 0;
    }
    if (snprintf(path, sizeof path, "%s/%s", strcmp(w->wd[ev->wd], "/") ? w->wd[ev->wd] : "",
                 ev->name) >= (int)sizeof path)
        return 0;
    for (int i = 0; (m & IN_ISDIR) && (m & IN_MOVED_FROM) && i < w->nwd; i++)
        if (w->wd[i] && under(w->wd[i], path))
            inotify_rm_watch(w->fd, i);     /* a tree moved away: stale paths */
    if ((m & IN_ISDIR) && (m & (IN_CREATE | IN_MOVED_TO)) && in_roots(w, path))
        walk(w, path, visit_watch, 0);
    return note(w, m & (IN_CREATE | IN_MOVED_TO) ? CH_ADDED
                 : m & (IN_DELETE | IN_MOVED_FROM) ? CH_DELETED : CH_MODIFIED, path);
}

/* Read what is pending, without blocking: the number of events that count. */
static int gather(reload_watch *w)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    const struct inotify_event *ev;
    ssize_t len;
    int n = 0;

    while ((len = read(w->fd, buf, sizeof buf)) > 0)
        for (char *p = buf; p < buf + len; p += sizeof *ev + ev->len)
            n += event(w, ev = (const struct inotify_event *)(void *)p);
    return n;
}
#else
static void visit_scan(reload_watch *w, const char *path, const struct stat *st, int root)
{
    stamp *v;

    (void)root;
    if (S_ISDIR(st->st_mode) || filtered(w, path))
        return;
    if (w->nnext == w->capnext) {
        if (!(v = realloc(w->next, (size_t)(w->capnext * 2 + 64) * sizeof *v)))
            return;
        w->next = v, w->capnext = w->capnext * 2 + 64;
    }
    v = &w->next[w->nnext];
    *v = (stamp){ strdup(path), st->st_mtim, st->st_size, st->st_ino };
    w->nnext += v->path != NULL;
}

static int differ(const stamp *a, const stamp *b)
{
    return a->mtime.tv_sec != b->mtime.tv_sec || a->mtime.tv_nsec != b->mtime.tv_nsec
           || a->size != b->size || a->ino != b->ino;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const stamp *)a)->path, ((const stamp *)b)->path);
}

/* Scan the trees again and compare with the last scan: the changes that count. */
static int gather(reload_watch *w)
{
    char path[PATH_MAX];
    int i = 0, j = 0, n = 0, c;
    stamp *a = w->snap, *b;

    w->nnext = 0;
    for (int r = 0; r < w->nroots; r++)
        walk(w, strcpy(path, w->roots[r]), visit_scan, 1);
    if ((b = w->next))
        qsort(b, (size_t)w->nnext, sizeof *b, by_path);
    while (w->primed && (i < w->nsnap || j < w->nnext)) {
        c = i == w->nsnap ? 1 : j == w->nnext ? -1 : strcmp(a[i].path, b[j].path);
        if (c < 0)
            n += note(w, CH_DELETED, a[i++].path);
        else if (c > 0)
            n += note(w, CH_ADDED, b[j++].path);
        else if (differ(&a[i++], &b[j++]))
            n += note(w, CH_MODIFIED, b[j - 1].path);
    }
    for (i = 0; i < w->nsnap; i++)
        free(a[i].path);
    free(a);                    /* the new scan becomes the last */
    w->snap = b, w->nsnap = w->nnext, w->primed = 1;
    w->next = NULL, w->nnext = w->capnext = 0;
    return n;
}
#endif

/* realpath(3) each path of l; one that need not exist (yet) is kept as
 * given.  -1 with errno and *bad on failure. */
static int resolve(char ***out, int *n, const strlist *l, int must_exist, const char **bad)
{
    if (!(*out = calloc((size_t)l->n + 1, sizeof **out)))
        return -1;
    for (*n = 0; *n < l->n; (*n)++)
        if (!((*out)[*n] = realpath(l->v[*n], NULL))
            && (must_exist || !((*out)[*n] = strdup(l->v[*n]))))
            return *bad = l->v[*n], -1;
    return 0;
}

void reload_close(reload_watch *w)
{
    for (int i = 0; i < w->nroots; i++) free(w->roots[i]);
    for (int i = 0; i < w->nskip; i++) free(w->skip[i]);
    for (int i = 0; i < w->nre; i++) regfree(&w->re[i]);
    for (int i = 0; i < w->nch; i++) free(w->ch[i].path);
#ifdef RELOAD_INOTIFY
    for (int i = 0; i < w->nwd; i++) free(w->wd[i]);
    free(w->wd);
    if (w->fd >= 0) close(w->fd);
#else
    for (int i = 0; i < w->nsnap; i++) free(w->snap[i].path);
    free(w->snap), free(w->next);
#endif
    free(w->roots), free(w->skip), free(w->re), free(w->ch), free(w);
}

reload_watch *reload_open(const config *cfg, char *err, size_t errlen)
{
    static const char *here[] = { "." };
    strlist roots = cfg->reload_paths.n ? cfg->reload_paths : (strlist){ here, 1 };
    const strlist *pats = &cfg->reload_ignore_patterns;
    const char *bad = "";
    char path[PATH_MAX];
    reload_watch *w = calloc(1, sizeof *w);

    if (!w || !(w->ch = calloc(RELOAD_KEEP, sizeof *w->ch))
        || !(w->re = calloc((size_t)(NELEM(default_res) + pats->n), sizeof *w->re))) {
        snprintf(err, errlen, "--reload: %s", strerror(ENOMEM));
        return free(w), NULL;
    }
    w->fd = -1, w->tick_ms = cfg->reload_tick_ms > 0 ? cfg->reload_tick_ms : 50;
    w->dirs = &cfg->reload_ignore_dirs;
    if (resolve(&w->roots, &w->nroots, &roots, 1, &bad)
        || resolve(&w->skip, &w->nskip, &cfg->reload_ignore_paths, 0, &bad)) {
        snprintf(err, errlen, "%s: %s: %s", opt_label(w->skip ? "reload-ignore-paths"
                 : "reload-paths"), bad, strerror(errno));
        goto fail;
    }
    for (int rc, i = 0; i < NELEM(default_res) + pats->n; i++, w->nre++) {
        const char *re = i < NELEM(default_res) ? default_res[i] : pats->v[i - NELEM(default_res)];
        if ((rc = regcomp(&w->re[i], re, REG_EXTENDED | REG_NOSUB))) {
            int n = snprintf(err, errlen, "%s: '%s': ", opt_label("reload-ignore-patterns"), re);
            if (n >= 0 && (size_t)n < errlen)
                regerror(rc, &w->re[i], err + n, errlen - (size_t)n);
            goto fail;
        }
    }
#ifdef RELOAD_INOTIFY
    if ((w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
        w->werr = errno;
    for (int i = 0; i < w->nroots && w->fd >= 0; i++)
        walk(w, strcpy(path, w->roots[i]), visit_watch, 1);
    if (w->werr) {
        snprintf(err, errlen, "--reload: inotify: %s%s", strerror(w->werr),
                 w->werr == ENOSPC ? " (raise sysctl fs.inotify.max_user_watches)" : "");
        goto fail;
    }
#else
    (void)path;
    gather(w);                  /* the first scan: what later ones compare with */
#endif
    return w;
fail:
    reload_close(w);
    return NULL;
}

int reload_fd(reload_watch *w)
{
    return w->fd;
}

static void report(reload_watch *w)
{
    int extra = w->more + (w->nch > RELOAD_LOG_MAX ? w->nch - RELOAD_LOG_MAX : 0);

    log_info("Changes detected, reloading workers..");
    for (int i = 0; i < w->nch; i++) {
        if (i < RELOAD_LOG_MAX)
            log_info("%s: %s", ch_name[w->ch[i].kind], w->ch[i].path);
        free(w->ch[i].path);
    }
    if (extra)
        log_info("... and %d more", extra);
    w->nch = w->more = 0;
}

/* Once something counts, collect until the trees have been quiet for a
 * tick (an editor's save is a burst of events), RELOAD_SETTLE_MS at most:
 * one reload per save. */
int reload_changed(reload_watch *w)
{
    struct pollfd p = { w->fd, POLLIN, 0 };     /* fd -1: poll() only sleeps */
    int64_t t0;
    long left;

    if (!gather(w))
        return 0;
    t0 = clock_ms();
    do {
        left = RELOAD_SETTLE_MS - (long)(clock_ms() - t0);
    } while (left > 0 && poll(&p, 1, w->tick_ms < left ? w->tick_ms : (int)left) >= 0
             && gather(w));
    report(w);
    return 1;
}
