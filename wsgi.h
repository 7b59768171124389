/* wsgi.h -- PEP 3333 (wsgi.c). */
#ifndef WSGI_H
#define WSGI_H

#include "req.h"

int wsgi_init(const config *cfg, void *app);
/* Run the app for r, holding the GIL; finishes r (r->keep). */
void wsgi_handle(request *r);

#endif
