/* master.h -- the master process (master.c). */
#ifndef MASTER_H
#define MASTER_H

#include "granc.h"

/* Bind the listeners, fork the workers, supervise them until a stop
 * signal or a failure; returns the server's exit status. */
int master_run(const config *cfg);
/* Remove the pid file and socket file the master created (master only). */
void master_cleanup(void);

#endif
