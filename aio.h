/* aio.h -- the bridge to asyncio (aio.c), shared by the asyncio
 * interfaces.  Include after <Python.h>.
 */
#ifndef AIO_H
#define AIO_H

#include "granc.h"

int aio_init(void);                  /* once, with the GIL, before aio_run */
/* Run the loop (loop_kind: auto, asyncio, uvloop...): init(loop) if not
 * NULL, lifespan if asked, then granc's events until the worker has
 * stopped and drained, then fini(loop) if not NULL (RSGI's hooks); returns
 * an exit code. */
int aio_run(PyObject *app, int lifespan, int loop_fd, const char *loop_kind, PyObject *init,
            PyObject *fini);
/* An awaitable already done with value (stolen); NULL if value is.
 * Inline: receive() and send() return one for most calls. */
typedef struct {
    PyObject_HEAD
    PyObject *value;
} Ready;
extern PyTypeObject aio_ready_type;
static inline PyObject *aio_ready(PyObject *value)
{
    if (!value) return NULL;
    Ready *r = PyObject_New(Ready, &aio_ready_type);
    if (!r) { Py_DECREF(value); return NULL; }
    r->value = value;
    return (PyObject *)r;
}
/* An awaitable that gives the loop one turn (as asyncio.sleep(0) does),
 * then is done: a send that never has to wait must still let the loop
 * read (a websocket push loop would never see the client's close). */
PyObject *aio_yield(void);
/* A request's task: loop.create_task(coro), without its "Task-<n>" name. */
PyObject *aio_new_task(PyObject *coro);
/* A finished task's outcome as the pending exception: the one it raised,
 * or a RuntimeError if it was cancelled; none if it returned. */
void aio_task_raise(PyObject *task);
extern PyObject *aio_create_future;  /* loop.create_future, once the loop runs */
extern PyObject *aio_lifespan_state; /* the lifespan's state, copied per request */

#endif
