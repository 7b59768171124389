/* unit_static.c -- static.c's path checks and route matching (TAP). */
#include "granc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AREA_BYTES 4096             /* one path, guarded */

#include "tap.h"
#include "metrics.h"
#include "static.h"

wk_metrics *wk_m;                   /* static.c counts; nothing reads them here */

static void rel(const char *in, const char *want)
{
    char out[256];
    size_t n = strlen(in);
    int r = static_rel_path(guarded(in, n), n, out, sizeof(out));
    if (!want)
        ok(r < 0, "refused: \"%s\"", in);
    else
        ok(r == 0 && !strcmp(out, want), "\"%s\" -> \"%s\" (got %s)", in, want, r ? "refused" : out);
}

static void match(const char *path, int want)
{
    http_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.path = (slice){ guarded(path, strlen(path)), strlen(path) };
    ok(static_match(&rq) == want, "%s %s", path, want ? "matches" : "does not match");
}

int main(void)
{
    tap_begin();
    rel("/a.txt", "a.txt");
    rel("/sub/x.css", "sub/x.css");
    rel("", ".");
    rel("/", ".");
    rel("//etc/passwd", "etc/passwd");          /* beneath the mount, not / */
    rel("/./a/./b/", "a/b");
    rel("/..", NULL);
    rel("/../x", NULL);
    rel("/a/../../x", NULL);
    rel("/a/..", NULL);
    rel("/a\\..\\x", NULL);
    rel("/...", "...");                        /* a name, not a parent */
    rel("/..a", "..a");
    {   /* NUL inside: static_rel_path sees n bytes */
        char out[64];
        ok(static_rel_path(guarded("/a\0b", 4), 4, out, sizeof(out)) < 0, "NUL refused");
        ok(static_rel_path(guarded("/abcdef", 7), 7, out, 4) < 0, "too long refused");
    }

    char *mounts[] = { "/tmp", "/tmp" };
    const char *routes[] = { "/static/", "/a%20b" };
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.static_path_mount = (strlist){ (const char **)mounts, 2 };
    cfg.static_path_route = (strlist){ routes, 2 };
    ok(static_init(&cfg) == 0, "static_init");
    match("/static", 1);
    match("/static/", 1);
    match("/static/x/y", 1);
    match("/%73tatic/x", 1);                   /* decoded before matching */
    match("/staticfoo", 0);
    match("/stati", 0);
    match("/", 0);
    match("/a%20b/c", 0);                      /* the route is taken as written */
    match("/a%2520b/c", 1);
    return tap_end();
}
