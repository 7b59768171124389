/* net.c -- --forwarded-allow-ips: the proxies whose X-Forwarded-For and
 * X-Forwarded-Proto granc believes, and what they say.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "net.h"
#include "http.h"

typedef struct trust_net {
    int family;                  /* AF_INET or AF_INET6 */
    unsigned char ip[16];
    int bits;                    /* prefix length */
} trust_net;

static trust_net *trusted;
static int ntrusted, trust_any, trust_unix;

static int trust_add(const char *s)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    trust_net t = { 0 };
    if (!strcmp(s, "*")) return trust_any = 1;
    if (!strcmp(s, "unix")) return trust_unix = 1;
    if (n >= sizeof(ip)) return -1;
    memcpy(ip, s, n);
    ip[n] = 0;
    t.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(t.family, ip, t.ip) != 1) return -1;
    int max = t.family == AF_INET ? 32 : 128;
    char *end;
    long bits = slash ? strtol(slash + 1, &end, 10) : max;
    if (slash && (!slash[1] || *end || bits < 0 || bits > max)) return -1;
    t.bits = (int)bits;
    trust_net *g = realloc(trusted, sizeof(*g) * (size_t)(ntrusted + 1));
    if (!g) return -1;
    trusted = g;
    trusted[ntrusted++] = t;
    return 0;
}

int proxy_trust_init(const strlist *l, char *bad, size_t badlen)
{
    for (int i = 0; i < l->n; i++) {
        char *copy = strdup(l->v[i]), *save = NULL;
        if (!copy) return -1;
        for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
            if (trust_add(tok) < 0) {
                snprintf(bad, badlen, "%s", tok);
                free(copy);
                return -1;
            }
        free(copy);
    }
    return 0;
}

static int trust_peer(const char *addr, int family)
{
    unsigned char ip[16];
    if (trust_any) return 1;
    if (family == AF_UNIX) return trust_unix;
    if (!*addr) return 0;
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, addr, ip) != 1) return 0;
    if (fam == AF_INET6 && !memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
        memmove(ip, ip + 12, 4);        /* ::ffff:a.b.c.d is an IPv4 peer */
        fam = AF_INET;
    }
    for (int i = 0; i < ntrusted; i++) {
        const trust_net *t = &trusted[i];
        int b = t->bits;
        if (t->family != fam) continue;
        if (memcmp(ip, t->ip, (size_t)(b / 8))) continue;
        if (b % 8 && ((ip[b / 8] ^ t->ip[b / 8]) & (0xff00 >> (b % 8)) & 0xff)) continue;
        return 1;
    }
    return 0;
}

int proxy_trusted(const char *addr, int family)
{
    return (ntrusted || trust_any || trust_unix) && trust_peer(addr, family);
}

/* The value of the last field named `lower` (a list's rightmost line),
 * or an empty slice. */
static slice header(const http_request *rq, const char *lower)
{
    const http_header *h = http_find_header(rq, lower, 1);
    return h ? h->value : (slice){ "", 0 };
}

/* fwd = s as a C string (s is shorter than PROXY_ADDR_MAX). */
static void set_addr(char fwd[PROXY_ADDR_MAX], slice s)
{
    memcpy(fwd, s.p, s.n);
    fwd[s.n] = 0;
}

/* What a trusted proxy says of the client, as uvicorn reads it: in
 * X-Forwarded-For the rightmost address that is not itself a trusted
 * proxy (the leftmost if all are); X-Forwarded-Proto's last value. */
void proxy_forwarded(const http_request *rq, char fwd[PROXY_ADDR_MAX], signed char *proto)
{
    slice rest = header(rq, "x-forwarded-for"), e, first = { "", 0 }, client = { "", 0 };

    /* Left to right: the last untrusted address seen is the rightmost. */
    while (http_list_next(&rest, &e)) {
        if (e.n >= PROXY_ADDR_MAX) continue;    /* too long for an address */
        set_addr(fwd, e);                       /* trust_peer takes a C string */
        if (!first.n) first = e;
        if (!trust_peer(fwd, AF_INET)) client = e;
    }
    set_addr(fwd, client.n ? client : first);

    slice last = { "", 0 };
    for (rest = header(rq, "x-forwarded-proto"); http_list_next(&rest, &e);) last = e;
    if (http_name_is(last, "https") || http_name_is(last, "wss")) *proto = 1;
    else if (http_name_is(last, "http") || http_name_is(last, "ws")) *proto = -1;
    else *proto = 0;
}
