/* net.h -- listeners, and proxy trust (--forwarded-allow-ips) (net.c). */
#ifndef NET_H
#define NET_H

#include "granc.h"
#include "http.h"

/* Bind or inherit the listeners cfg asks for (--fd, systemd's LISTEN_FDS,
 * --uds, else every address of --host on --port), listening, non-blocking
 * and inherited across fork; a failure exits through die() naming the
 * option.  Returns how many, in ls.  With TCP and several workers, *slots
 * gets cfg->workers * n sockets (worker id's at slots[(id-1)*n]: one
 * SO_REUSEPORT socket per address each), else NULL. */
int net_listen(const config *cfg, listener ls[MAX_LISTENERS], listener **slots);
/* At the master's exit: remove the Unix socket file net_listen made. */
void net_cleanup(void);

#define PROXY_ADDR_MAX 64           /* an IP as text, with room to spare */

/* Parse --forwarded-allow-ips (IPs, CIDRs, "unix", "*"; commas allowed);
 * -1 with the bad entry in bad. */
int proxy_trust_init(const strlist *l, char *bad, size_t badlen);
/* Is this peer (an IP as text; "" on a Unix socket) a trusted proxy? */
int proxy_trusted(const char *addr, int family);
/* A trusted proxy's word on rq's client: fwd gets X-Forwarded-For's
 * client ("" if none), *proto 1 (https), -1 (http) or 0 (not said). */
void proxy_forwarded(const http_request *rq, char fwd[PROXY_ADDR_MAX], signed char *proto);

#endif
