/* log.h -- server log and access log (log.c). */
#ifndef LOG_H
#define LOG_H

#include "http.h"

void log_init(int enabled, int level);
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LL_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LL_ERROR, __VA_ARGS__)

/* One finished request, as the access log sees it. */
typedef struct access_rec {
    const char *addr;                /* client IP text */
    double start;                    /* wall clock, seconds */
    double dt_ms;
    int status;
    slice method, path, query;
    const char *scheme;              /* "http" / "https" */
    const char *protocol;            /* "HTTP/1.1" ... */
    const http_header *headers;
    size_t nheaders;
} access_rec;

int log_access_init(const char *fmt);   /* -1 on a bad format */
/* Where finished lines go instead of stdout (NULL: stdout): the level,
 * whether it is an access line, the text without "[LEVEL] ". */
typedef void log_sink_fn(int level, int access, const char *line, size_t n);
void log_set_sink(log_sink_fn *fn);
void log_access(const access_rec *r);

#endif
