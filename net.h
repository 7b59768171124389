/* net.h -- proxy trust (--forwarded-allow-ips). */
#ifndef NET_H
#define NET_H

#include "granc.h"
#include "http.h"

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
