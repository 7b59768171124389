/* http.h -- HTTP/1.1 request parser, chunked decoder, header rules (http.c). */
#ifndef HTTP_H
#define HTTP_H

#include "granc.h"

#include <string.h>

#define HTTP_MAX_HEADERS     100     /* hyper's default; more -> 431 */
#define HTTP_MAX_TARGET      8192    /* request-target bytes; more -> 414 */
#define HTTP_MAX_CHUNK_EXT   1024    /* chunk extension bytes per chunk */
#define HTTP_MAX_TRAILER     8192    /* trailer section bytes */


typedef struct http_header {
    slice name, value;
} http_header;

/* A parsed request head.  Slices point into the caller's buffer, which must
 * not move while they are used. */
typedef struct http_request {
    slice method, target;            /* target as sent */
    slice path, query;               /* target split at '?'; query w/o '?' */
    slice authority;                 /* absolute-form: host[:port]; else empty */
    int minor;                       /* HTTP/1.<minor>: 0 or 1 */
    size_t nheaders;
    http_header headers[HTTP_MAX_HEADERS];
    /* the framing facts, derived by http_parse_request */
    int64_t content_length;          /* -1: none */
    unsigned chunked : 1;            /* Transfer-Encoding: chunked */
    unsigned keep_alive : 1;         /* per version and Connection */
    unsigned expect_continue : 1;    /* Expect: 100-continue */
    unsigned upgrade : 1;            /* Connection: upgrade + Upgrade */
    unsigned h2 : 1;                 /* came over HTTP/2 (h2.c) */
} http_request;

/* Parse the head in buf[0..len).  last_len is the length at the previous
 * call (0 the first time) so the end-of-head scan does not restart.
 * Returns the head length (> 0), HTTP_INCOMPLETE, or HTTP_BAD with
 * *status set to the answer (400, 414, 431, 501, 505). */
#define HTTP_INCOMPLETE (-2)
#define HTTP_BAD        (-1)
int http_parse_request(const char *buf, size_t len, size_t last_len,
                       http_request *req, int *status);

/* Chunked body decoder: zero-initialise, then feed raw bytes. */
typedef struct http_chunked {
    int state;
    uint64_t left;                   /* bytes left in the current chunk */
    size_t count;                    /* bytes of the current size/ext line */
    size_t trailer;                  /* trailer bytes seen */
    unsigned ndigits;
} http_chunked;

/* Decode buf[0..*len) in place.  On return buf[0..*len) holds the decoded
 * data.  Returns HTTP_INCOMPLETE (all input consumed, more needed),
 * HTTP_BAD, or, once the last chunk and trailers are consumed, the number
 * of bytes that follow the body (they start at buf[*len]). */
ssize_t http_chunked_decode(http_chunked *d, char *buf, size_t *len);

/* Percent-decode n bytes of in into out (room for n); returns the length. */
size_t http_pct_decode(const char *in, size_t n, char *out);
/* Comma lists (RFC 9110 5.6.1): pop the next element of *rest into *elem,
 * OWS trimmed, empty elements skipped; 0 at the end.  For example
 *     for (slice rest = value, e; http_list_next(&rest, &e);) ...     */
int http_list_next(slice *rest, slice *elem);
/* Whether the comma list v[0,n) has an element equal to lower (any case). */
int http_has_token(const char *v, size_t n, const char *lower);
/* A token (RFC 9110 5.6.2); a valid field value (no CTL but HTAB). */
int http_is_token(const char *p, size_t n);
int http_value_ok(const char *p, size_t n);
/* A whole field value as a decimal (a Content-Length): 0, or -1. */
int http_decimal(slice v, int64_t *out);
/* Write v in decimal into the bytes before end; returns its first digit. */
char *http_utoa(char *end, uint64_t v);
/* The first (or, with last, the last) field named lower, or NULL. */
const http_header *http_find_header(const http_request *rq, const char *lower, int last);
/* Header name compare, ASCII case-insensitive; lower is lower-case.
 * Inline so that, with a literal, the length test is one compare that
 * answers most calls without a call; http_lower_eq (a memcmp first, as
 * apps and HTTP/2 send names in lower case) only when the lengths match. */
int http_lower_eq(const char *p, const char *lower, size_t n);
static inline int http_name_is(slice name, const char *lower)
{
    size_t n = strlen(lower);
    return name.n == n && http_lower_eq(name.p, lower, n);
}
const char *http_reason(int status);
/* The cached "Date: ..." value (29 bytes + NUL), refreshed once a second. */
const char *http_date(void);

/* ---- response heads ---- */

#define HTTP_HEAD_MAX   65536        /* response head bytes an app may produce */

/* What a response head fixed. */
typedef struct resp_head {
    int code;                        /* status: set by the caller */
    int64_t clen;                    /* Content-Length sent, or -1 */
    unsigned chunked : 1;            /* the body goes out chunked */
    unsigned nobody : 1;             /* HEAD, 1xx, 204, 304: no body bytes */
    unsigned keep : 1;               /* the head promised keep-alive */
    unsigned trailers : 1;           /* set by the caller: trailers will follow
                                        (HTTP/2 ends a body at its length else) */
} resp_head;

/* Write the HTTP/1.1 response head for h->code into out[0,cap): the
 * status line with reason (NULL: the standard phrase), the app's fields
 * (names and values already checked: http_is_token, http_value_ok) less
 * the ones framing belongs to (Transfer-Encoding, Connection, Keep-Alive;
 * Content-Length kept where a body may follow), server and date unless
 * given, then the framing: Content-Length (the app's, else total when
 * known), chunked (HTTP/1.1) or close (HTTP/1.0), and keep-alive as
 * can_keep allows.  rq is the request answered.  Fills h.  Returns the
 * head's length, which may exceed cap (nothing past cap is written: call
 * again with that much room), or HTTP_BAD for an invalid Content-Length. */
ssize_t http_resp_head(resp_head *h, const char *reason, size_t rn, const http_header *f,
                       size_t nf, int64_t total, const http_request *rq, int can_keep,
                       char *out, size_t cap);

#endif
