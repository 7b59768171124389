/* pool.h -- where WSGI requests run (pool.c): inline or on application
 * threads.  The interface tables (wsgi_inline_iface, wsgi_pool_iface) are
 * in req.h; the worker's loop takes finished requests from here.
 */
#ifndef POOL_H
#define POOL_H

#include "req.h"

/* The requests finished since the last call, linked by qnext. */
request *pool_done(void);
/* Give a list pool_done returned back, for the loop's next owner. */
void pool_requeue(request *list);
/* The app is about to wait for the client: if this thread holds the
 * loop, another takes it now. */
void pool_blocking(void);

#endif
