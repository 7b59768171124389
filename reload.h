/* reload.h -- --reload: watch files, tell the master when one changed (reload.c). */
#ifndef RELOAD_H
#define RELOAD_H

#include "granc.h"

typedef struct reload_watch reload_watch;

/* Watch --reload-paths (default: the working directory) recursively,
 * filtered as watchfiles' DefaultFilter extended by --reload-ignore-dirs,
 * --reload-ignore-patterns and --reload-ignore-paths.  NULL with a
 * one-line reason in err on failure. */
reload_watch *reload_open(const config *cfg, char *err, size_t errlen);
/* A descriptor that turns readable when events are pending (inotify), or
 * -1 when the caller must call reload_changed every --reload-tick ms
 * (the portable stat() scan). */
int reload_fd(reload_watch *w);
/* Consume pending events.  1 when a watched file changed: the changes are
 * logged ("Changes detected, reloading workers.." and one line per path);
 * 0 otherwise.  Once a change counts, it waits until the trees have been
 * quiet for --reload-tick, at most 1.6 s. */
int reload_changed(reload_watch *w);
/* Release the watch (the master at exit; a worker right after fork). */
void reload_close(reload_watch *w);

#endif
