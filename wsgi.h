/* wsgi.h -- PEP 3333 (wsgi.c). */
#ifndef WSGI_H
#define WSGI_H

#include "conn.h"

int wsgi_init(const config *cfg, void *app);
/* Run the app for c's request, holding the GIL; sets c->keep. */
void wsgi_handle(conn *c);

#endif
