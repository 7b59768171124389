/* static.h -- --static-path-*: files served before any Python (static.c). */
#ifndef STATIC_H
#define STATIC_H

#include "granc.h"
#include "http.h"
#include "req.h"

/* The worker opens its mounts once; -1 (logged) when one cannot be. */
int static_init(const config *cfg);
/* Does the request's percent-decoded path fall under a route (on whole
 * segments: /static matches /static and /static/x, not /staticfoo)? */
int static_match(const http_request *rq);
/* A path below a route, decoded, as a relative path safe to open beneath
 * the mount: no NUL, no backslash, no ".." segment; empty and "."
 * segments dropped ("." when nothing is left).  -1 when refused. */
int static_rel_path(const char *p, size_t n, char *out, size_t cap);

/* The interface of static requests: the protocol picks it (r->ifc) when
 * static_match says so. */
extern const app_iface static_iface;

#endif
