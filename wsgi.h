/* wsgi.h -- PEP 3333 (wsgi.c). */
#ifndef WSGI_H
#define WSGI_H

#include "conn.h"

/* What a response head fixed. */
typedef struct resp_head {
    int code;                        /* status */
    int64_t clen;                    /* Content-Length sent, or -1 */
    unsigned chunked : 1;            /* the body goes out chunked */
    unsigned nobody : 1;             /* HEAD, 1xx, 204, 304: no body bytes */
    unsigned keep : 1;               /* the head promised keep-alive */
} resp_head;

/* Python objects are opaque here (void *) so that only the files that
 * embed Python include Python.h. */
int resp_head_build(conn *c, resp_head *h, const char *reason, size_t rn,
                    void *headers, int64_t total, const char **out, size_t *outn);
int wsgi_init(const config *cfg, void *app);
/* Run the app for c's request, holding the GIL; sets c->keep. */
void wsgi_handle(conn *c);

#endif
