/* unit_reload.c -- TAP tests for reload.c, on real temporary trees.
 *
 * The Makefile builds it twice: tests/unit/unit_reload (inotify) and
 * tests/unit/unit_reload_poll (-DRELOAD_POLL: the portable stat() scan); both
 * must pass the same checks.  The log lines reload_changed writes to
 * standard output are captured in a file and checked too.  Links
 * reload.c, log.c and http.c (which log.c uses).
 */
#include "granc.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define AREA_BYTES 4096             /* one ignored directory name, guarded */

#include "tap.h"
#include "reload.h"

/* A file replaced by rename: inotify sees it arrive, a scan sees its
 * inode change. */
#ifdef RELOAD_POLL
#define BACKEND  "stat scan"
#define REPLACED "Modified"
#else
#define BACKEND  "inotify"
#define REPLACED "Added"
#endif

static char root[PATH_MAX];         /* the temporary tree */
static char logged[16384];          /* what the last reload_changed logged */

/* Stub: granc.c names options by how they were set; here always a flag. */
const char *opt_label(const char *name)
{
    static char buf[64];

    snprintf(buf, sizeof buf, "--%s", name);
    return buf;
}

static const char *at(const char *rel)
{
    static char buf[2][2 * PATH_MAX];
    static int k;

    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

static void put(const char *rel, const char *text)
{
    int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        perror(at(rel));
        exit(2);
    }
    close(fd);
}

static void mkd(const char *rel)
{
    if (mkdir(at(rel), 0755)) {
        perror(at(rel));
        exit(2);
    }
}

/* reload_changed with standard output sent to a file, read into logged. */
static int changed(reload_watch *w)
{
    char tmp[] = "/tmp/unit_reload_log.XXXXXX";
    int fd = mkstemp(tmp), saved = dup(STDOUT_FILENO);
    ssize_t n;

    if (fd < 0 || saved < 0)
        exit(2);
    unlink(tmp);
    dup2(fd, STDOUT_FILENO);
    int r = reload_changed(w);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    n = pread(fd, logged, sizeof logged - 1, 0);
    logged[n > 0 ? n : 0] = '\0';
    close(fd);
    return r;
}

/* logged has the line "<kind>: <root>/<rel>" exactly once. */
static int saw(const char *kind, const char *rel)
{
    char line[PATH_MAX + 32];
    const char *p;

    snprintf(line, sizeof line, "[INFO] %s: %s\n", kind, at(rel));
    return (p = strstr(logged, line)) && !strstr(p + 1, line);
}

#ifndef RELOAD_POLL
/* The inotify watches on fd, as /proc tells them. */
static int watches(int fd)
{
    char name[64], line[512];
    int n = 0;
    FILE *f;

    snprintf(name, sizeof name, "/proc/self/fdinfo/%d", fd);
    if (!(f = fopen(name, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        n += !strncmp(line, "inotify wd:", 11);
    fclose(f);
    return n;
}
#endif

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(path);
}

static config cfg;

static void test_tree(void)
{
    static const char *pats[] = { "^draft_", "\\.tmp$" };
    static char skipme[PATH_MAX];   /* cfg keeps pointing at these */
    static const char *skip[] = { skipme }, *dirs[1];
    char err[256];
    reload_watch *w;

    mkd("pkg"), mkd("__pycache__"), mkd(".git"), mkd("skipme"), mkd("build");
    mkd("node_modules");
    put("app.py", "A = 1\n"), put("pkg/mod.py", "M = 1\n");
    strcpy(skipme, at("skipme"));
    dirs[0] = guarded("build", sizeof "build");     /* a filter over-read crashes */
    cfg.reload_paths = (strlist){ (const char *[]){ root }, 1 };
    cfg.reload_ignore_dirs = (strlist){ dirs, 1 };
    cfg.reload_ignore_patterns = (strlist){ pats, 2 };
    cfg.reload_ignore_paths = (strlist){ skip, 1 };
    cfg.reload_tick_ms = 100;

    w = reload_open(&cfg, err, sizeof err);
    ok(w != NULL, BACKEND ": reload_open on a tree (%s)", w ? "ok" : err);
    if (!w)
        return;
#ifdef RELOAD_POLL
    ok(reload_fd(w) == -1, BACKEND ": reload_fd is -1 (the master ticks)");
#else
    ok(reload_fd(w) >= 0, BACKEND ": reload_fd is a descriptor");
    ok(watches(reload_fd(w)) == 2, BACKEND ": only the root and pkg/ are watched (%d)",
       watches(reload_fd(w)));
#endif
    ok(changed(w) == 0 && !*logged, BACKEND ": nothing changed, nothing logged");

    put("app.py", "A = 22\n");
    ok(changed(w) == 1, BACKEND ": a .py edit is seen");
    ok(strstr(logged, "[INFO] Changes detected, reloading workers..\n") == logged
       && saw("Modified", "app.py"), BACKEND ": logged as Granian does");
    ok(changed(w) == 0, BACKEND ": and reported once");

    put("__pycache__/app.cpython-311.pyc", "x");
    ok(changed(w) == 0, BACKEND ": __pycache__ is ignored");
    put(".git/HEAD", "ref: refs/heads/x\n");
    ok(changed(w) == 0, BACKEND ": .git is ignored");
    put("node_modules/x.js", "x");
    ok(changed(w) == 0, BACKEND ": node_modules is ignored");
    put("app.pyc", "x"), put(".app.py.swp", "x"), put("app.py~", "x"), put(".#app.py", "x");
    ok(changed(w) == 0, BACKEND ": .pyc, .swp, ~ and .# files are ignored");
    put("build/gen.py", "x");
    ok(changed(w) == 0, BACKEND ": --reload-ignore-dirs is honoured");
    put("draft_1.py", "x"), put("pkg/notes.tmp", "x");
    ok(changed(w) == 0, BACKEND ": --reload-ignore-patterns are honoured");
    put("skipme/a.py", "x");
    ok(changed(w) == 0, BACKEND ": --reload-ignore-paths is honoured");
    mkd("draft_dir");
    ok(changed(w) == 0, BACKEND ": a directory matching a pattern is ignored...");
    put("draft_dir/x.py", "x");
    ok(changed(w) == 1 && saw("Added", "draft_dir/x.py"),
       BACKEND ": ...but not what is in it (patterns match the last name only)");

    mkd("new");
    changed(w);                 /* inotify reports the directory; a scan has no files yet */
    put("new/m.py", "N = 1\n");
    ok(changed(w) == 1 && saw("Added", "new/m.py"), BACKEND ": a new directory's file is seen");
    put("new/m.py", "N = 22\n");
    ok(changed(w) == 1 && saw("Modified", "new/m.py"), BACKEND ": and its later edits");

    unlink(at("pkg/mod.py"));
    ok(changed(w) == 1 && saw("Deleted", "pkg/mod.py"), BACKEND ": a deletion is seen");

    mkd("pkg/sub");
    changed(w);
    put("pkg/sub/keep.py", "x");
    changed(w);
    rename(at("pkg"), at("lib"));
    ok(changed(w) == 1, BACKEND ": a moved directory is seen");
    put("lib/sub/s.py", "x");
    ok(changed(w) == 1 && saw("Added", "lib/sub/s.py"),
       BACKEND ": and its subtree under the new name");

    put("t.py", "1"), rename(at("t.py"), at("app.py"));     /* an editor's atomic save */
    ok(changed(w) == 1 && saw(REPLACED, "app.py"), BACKEND ": an atomic save is seen");

    for (int i = 0; i < 5; i++) {
        char text[32];
        snprintf(text, sizeof text, "A = %d\n", 1000 + i);
        put("app.py", text);
        poll(NULL, 0, 10);
    }
    ok(changed(w) == 1 && saw("Modified", "app.py"), BACKEND ": a burst of writes...");
    ok(changed(w) == 0, BACKEND ": ...is one reload");

    for (int i = 0; i < 30; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "lib/many%02d.py", i);
        put(rel, "x");
    }
    ok(changed(w) == 1 && strstr(logged, "... and 10 more\n"), BACKEND ": 20 lines, then a count");
    reload_close(w);
}

/* A --reload-paths file: only that file counts, even replaced by rename. */
static void test_file(void)
{
    char err[256];
    reload_watch *w;

    cfg.reload_paths = (strlist){ (const char *[]){ at("app.py") }, 1 };
    w = reload_open(&cfg, err, sizeof err);
    ok(w != NULL, BACKEND ": reload_open on a file (%s)", w ? "ok" : err);
    if (!w)
        return;
    put("other.py", "x");
    ok(changed(w) == 0, BACKEND ": its neighbours do not count");
    put("t.py", "12345"), rename(at("t.py"), at("app.py"));
    ok(changed(w) == 1 && saw(REPLACED, "app.py"), BACKEND ": the file replaced is seen");
    put("app.py", "A = 3\n");
    ok(changed(w) == 1, BACKEND ": and edited again afterwards");
    reload_close(w);
}

/* No --reload-paths: the working directory. */
static void test_cwd(void)
{
    char err[256], cwd[PATH_MAX];
    reload_watch *w;

    cfg.reload_paths = (strlist){ NULL, 0 };
    if (!getcwd(cwd, sizeof cwd) || chdir(root))
        exit(2);
    w = reload_open(&cfg, err, sizeof err);
    if (chdir(cwd))
        exit(2);
    ok(w != NULL, BACKEND ": reload_open on the working directory (%s)", w ? "ok" : err);
    if (!w)
        return;
    put("lib/x.py", "x");
    ok(changed(w) == 1 && saw("Added", "lib/x.py"), BACKEND ": it is watched, paths absolute");
    reload_close(w);
}

static void test_errors(void)
{
    static const char *bad[] = { "(" };
    char err[256];

    cfg.reload_paths = (strlist){ (const char *[]){ "/nonexistent/granc" }, 1 };
    ok(!reload_open(&cfg, err, sizeof err)
       && !strcmp(err, "--reload-paths: /nonexistent/granc: No such file or directory"),
       BACKEND ": a missing path fails (%s)", err);
    cfg.reload_paths = (strlist){ (const char *[]){ root }, 1 };
    cfg.reload_ignore_patterns = (strlist){ bad, 1 };
    ok(!reload_open(&cfg, err, sizeof err) && !strncmp(err, "--reload-ignore-patterns: '('", 29)
       && !strchr(err, '\n'), BACKEND ": a bad pattern fails (%s)", err);
}

int main(void)
{
    char tmp[] = "/tmp/unit_reload.XXXXXX";

    tap_begin();
    if (!mkdtemp(tmp) || !realpath(tmp, root)) {
        perror("mkdtemp");
        return 2;
    }
    test_tree();
    test_file();
    test_cwd();
    test_errors();
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return tap_end();
}
