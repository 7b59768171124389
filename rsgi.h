/* rsgi.h -- what rsgi.c (HTTP), rsgi_scope.c and rsgi_ws.c (websockets)
 * share.
 * Include after <Python.h> and asgi_int.h.
 */
#ifndef RSGI_H
#define RSGI_H

#include "asgi_int.h"

/* RSGIProtocolError and RSGIProtocolClosed (RuntimeError both) */
extern PyObject *rsgi_exc_proto, *rsgi_exc_closed;

/* rsgi_scope.c: the scope of r (a websocket's: ws); the types' set-up,
 * with the module they are named in (granian._granian) */
PyObject *rsgi_scope(request *r, int ws);
int rsgi_scope_init(PyObject *mod);

/* rsgi.c */
int rsgi_spawn(Transport *t, PyObject *scope, PyObject *proto);
void rsgi_task_end(Transport *t, int raised);
void rsgi_resolve(PyObject **fut, PyObject *value, PyObject *exc_type);
PyObject *rsgi_future(PyObject **slot);
PyObject *rsgi_raise(PyObject *exc, const char *msg);
PyObject *rsgi_send_wait(Transport *t);

/* rsgi_ws.c */
int rsgi_ws_init(const config *cfg);
int rsgi_ws_module(PyObject *mod);      /* its types into granian._granian */
int rsgi_ws_wanted(request *r);
void rsgi_ws_start(Transport *t);
void rsgi_ws_event(Transport *t);
void rsgi_ws_task_end(Transport *t);

#endif
