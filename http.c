/* http.c -- HTTP/1.1 request parser, chunked decoder, reason phrases, Date.
 *
 * Policy: strict RFC 9112.  A request head is either well formed or
 * refused; nothing is repaired, because every leniency is a place where
 * granc and a proxy in front of it could disagree about where a message
 * ends (request smuggling).
 *
 *   - Lines end with CRLF.  A bare LF or a bare CR anywhere in the head
 *     is 400.  Up to HTTP_MAX_EMPTY_LINES empty lines before the request
 *     line are skipped (RFC 9112 2.2).
 *   - Request line: token SP request-target SP "HTTP/" DIGIT "." DIGIT,
 *     exactly one SP between parts.  The target is visible ASCII only;
 *     over HTTP_MAX_TARGET bytes is 414.  Targets are origin-form,
 *     absolute-form (http/https, no userinfo) or "*" for OPTIONS; any
 *     other form is 400.
 *   - Versions: 1.0 and 1.1; 1.x above 1 is served as 1.1; any other
 *     major version is 505.
 *   - Fields: token ":" OWS value OWS.  Whitespace before the colon,
 *     obs-fold, an empty name or a control byte in the value is 400.
 *     More than HTTP_MAX_HEADERS fields is 431.
 *   - Framing: Content-Length is 1*DIGIT (at most 18 digits); repeats
 *     (fields, or a comma list of non-empty elements) must agree.  Transfer-Encoding must end with a single "chunked"
 *     (else 400) and name no other coding (else 501); it is 400 with
 *     Content-Length or in an HTTP/1.0 request.  HTTP/1.1 needs exactly
 *     one Host; more than one Host is 400 in any version.
 *   - Chunked bodies: strict hex sizes below 2^63; extensions follow the
 *     grammar exactly (";" token ["=" (token / quoted-string)], BWS
 *     around ";" and "="), so a quote can never hide a line end, and are
 *     capped at HTTP_MAX_CHUNK_EXT bytes; trailers capped at
 *     HTTP_MAX_TRAILER bytes and discarded; CRLF everywhere.
 *
 * After any of these answers (400, 414, 431, 501, 505) the connection is
 * closed: the worker does not try to find the next request.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L     /* gmtime_r */
#endif

#include "granc.h"
#include "http.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Empty lines tolerated before a request line.  RFC 9112 asks for at least
 * one (clients sometimes send a CRLF after a POST body); a few more cost
 * nothing, an unbounded number would let a client idle for free. */
#define HTTP_MAX_EMPTY_LINES 4

/* 18 decimal digits always fit in an int64_t; nobody sends 1 EB bodies. */
#define HTTP_MAX_CL_DIGITS   18

/* A chunk size is at most 16 hex digits (leading zeros included) and its
 * value below 2^63, so it fits every signed 64-bit length downstream. */
#define HTTP_MAX_CHUNK_DIGITS 16

/* ---- character classes (RFC 9110 5.6.2, 5.5) ---------------------------- */

/* The byte classes, one digit a byte, each class inside the one before:
 *   1  field-value byte: HTAB, SP, VCHAR, obs-text (never CR, LF, NUL, DEL)
 *   2  VCHAR: visible ASCII, 0x21-0x7e
 *   3  tchar: "!#$%&'*+-.^_`|~", digits and letters
 *   0  anything else: the other controls.
 * A table lookup is a load per byte where the tests were a chain of
 * branches; unit_http.c checks all 256 against the RFC's definitions. */
static const char byte_class[257] =
    "0000000001000000" "0000000000000000"   /* 0x00-0x1f: HTAB only */
    "1323333322332332" "3333333333222222"   /*  !"#$%&'()*+,-./ 0-9:;<=>? */
    "2333333333333333" "3333333333322233"   /* @A-O P-Z[\]^_ */
    "3333333333333333" "3333333333323230"   /* `a-o p-z{|}~ DEL */
    "1111111111111111" "1111111111111111"   /* 0x80-0xff: obs-text */
    "1111111111111111" "1111111111111111"
    "1111111111111111" "1111111111111111"
    "1111111111111111" "1111111111111111";

static int is_tchar(unsigned char c) { return byte_class[c] == '3'; }
static int is_vchar(unsigned char c) { return byte_class[c] >= '2'; }
static int is_field_byte(unsigned char c) { return byte_class[c] >= '1'; }
static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* http_name_is's comparison (http.h), once the lengths match: most names
 * come in lower case already (one memcmp); the others byte by byte. */
int http_lower_eq(const char *p, const char *lower, size_t n)
{
    if (memcmp(p, lower, n) == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)p[i]) != (unsigned char)lower[i])
            return 0;
    return 1;
}

/* Does s begin with lower (case-insensitively)? */
static int has_prefix(slice s, const char *lower)
{
    size_t n = strlen(lower);

    return s.n >= n && http_name_is((slice){s.p, n}, lower);
}

static int bad(int *status, int code)
{
    *status = code;
    return HTTP_BAD;
}

/* ---- request line -------------------------------------------------------- */

/* Split req->target into path and query by its form (RFC 9112 3.2).  An
 * absolute-form target with an empty path gets the static path "/". */
static int split_target(http_request *req)
{
    const char *p = req->target.p, *end = p + req->target.n, *q;

    if (p[0] == '*' && req->target.n == 1) {
        /* asterisk-form: server-wide OPTIONS only (methods are
         * case-sensitive, so "options" is another method). */
        if (req->method.n != 7 || memcmp(req->method.p, "OPTIONS", 7) != 0)
            return -1;
        req->path = req->target;
        req->query = (slice){end, 0};
        return 0;
    }
    if (p[0] != '/') {
        /* absolute-form: what a proxy-aware client may send.  The
         * authority must be present and carry no userinfo (RFC 9110 4.2.4
         * says to treat it as an error). */
        if (has_prefix(req->target, "http://"))
            p += 7;
        else if (has_prefix(req->target, "https://"))
            p += 8;
        else
            return -1;              /* authority-form, relative, other scheme */
        for (q = p; q < end && *q != '/' && *q != '?'; q++)
            if (*q == '@')
                return -1;
        if (q == p)
            return -1;
        req->authority = (slice){p, (size_t)(q - p)};
        p = q;
    }
    for (q = p; q < end && *q != '?'; q++)
        ;
    req->path = (q == p) ? (slice){"/", 1} : (slice){p, (size_t)(q - p)};
    req->query = (q < end) ? (slice){q + 1, (size_t)(end - q - 1)}
                           : (slice){end, 0};
    return 0;
}

/* Parse the request line in p[0..n).  Returns the bytes used through its
 * CRLF, HTTP_INCOMPLETE if the line runs past n, or HTTP_BAD.  The scan
 * is strictly left to right and decides on the first wrong byte, so the
 * caller may run it on a partial head to refuse garbage early and still
 * get the very answer the complete head would give. */
static ssize_t parse_request_line(const char *p, size_t n, http_request *req,
                                  int *status)
{
    static const char version[] = "HTTP/#.#\r\n";   /* '#' is a DIGIT */
    size_t i = 0, t, k;
    unsigned char c;

    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == n)
        return HTTP_INCOMPLETE;
    if (i == 0 || p[i] != ' ')
        return bad(status, 400);
    req->method = (slice){p, i};

    for (t = ++i; i < n && p[i] != ' '; i++) {
        if (i - t == HTTP_MAX_TARGET)
            return bad(status, 414);
        if (!is_vchar((unsigned char)p[i]))
            return bad(status, 400);
    }
    if (i == n)
        return HTTP_INCOMPLETE;
    if (i == t)
        return bad(status, 400);
    req->target = (slice){p + t, i - t};

    /* "HTTP/1.1\r\n", which nearly every request sends, at once; any
     * other version, or one cut short, byte by byte. */
    i++;
    if (n - i >= 10 && memcmp(p + i, "HTTP/1.1\r\n", 10) == 0) {
        i += 10;
    } else {
        for (k = 0; version[k] != '\0'; i++, k++) {
            if (i == n)
                return HTTP_INCOMPLETE;
            c = (unsigned char)p[i];
            if (version[k] == '#' ? !(c >= '0' && c <= '9') : c != version[k])
                return bad(status, 400);
        }
    }
    /* i is past "HTTP/M.m\r\n": the major digit is at i-5, minor at i-3. */
    if (p[i - 5] != '1')
        return bad(status, 505);
    req->minor = p[i - 3] == '0' ? 0 : 1;

    if (split_target(req) < 0)
        return bad(status, 400);
    return (ssize_t)i;
}

/* ---- header fields ------------------------------------------------------- */

/* Parse one field line in p[0..n); the caller guarantees a CRLF inside.
 * Returns the bytes used through its CRLF, or HTTP_BAD (always 400). */
static ssize_t parse_field_line(const char *p, size_t n, http_header *h)
{
    size_t i = 0, v, e;

    /* A leading SP/HTAB (obs-fold), an empty name, a space before the
     * colon and a non-token byte all fail the same test. */
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return HTTP_BAD;
    h->name = (slice){p, i};

    for (i++; i < n && is_ows((unsigned char)p[i]); i++)
        ;
    for (v = i; i < n && is_field_byte((unsigned char)p[i]); i++)
        ;
    if (i + 1 >= n || p[i] != '\r' || p[i + 1] != '\n')
        return HTTP_BAD;                    /* bare CR, bare LF, a CTL */
    for (e = i; e > v && is_ows((unsigned char)p[e - 1]); e--)
        ;
    h->value = (slice){p + v, e - v};
    return (ssize_t)(i + 2);
}

/* Pop the next element of a comma-separated list (RFC 9110 5.6.1), OWS
 * trimmed; empty elements are skipped as the RFC asks.  0 at the end. */
int http_list_next(slice *rest, slice *elem)
{
    const char *p = rest->p, *end = p + rest->n, *s, *e;

    while (p < end && (is_ows((unsigned char)*p) || *p == ','))
        p++;
    if (p == end)
        return 0;
    for (s = p; p < end && *p != ','; p++)
        ;
    for (e = p; is_ows((unsigned char)e[-1]); e--)
        ;
    *elem = (slice){s, (size_t)(e - s)};
    *rest = (slice){p, (size_t)(end - p)};
    return 1;
}

/* Whether p[0,n) is a token (RFC 9110 5.6.2). */
int http_is_token(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    return i == n && n > 0;
}

/* Read 1*DIGIT (at most HTTP_MAX_CL_DIGITS) at *p, before end, moving *p
 * past it: the value, or -1. */
static int64_t read_decimal(const char **p, const char *end)
{
    const char *start = *p;
    int64_t v = 0;

    for (; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
        if (*p - start == HTTP_MAX_CL_DIGITS)
            return -1;
        v = v * 10 + (**p - '0');
    }
    return *p == start ? -1 : v;
}

int http_decimal(slice v, int64_t *out)
{
    const char *p = v.p, *end = v.p + v.n;
    int64_t d = read_decimal(&p, end);
    if (d < 0 || p != end) return -1;
    *out = d;
    return 0;
}

/* Merge one Content-Length field into *cl (-1 = none so far).  The field
 * is 1*DIGIT, or a list of them as a proxy makes by joining repeated
 * fields: 1*DIGIT *(OWS "," OWS 1*DIGIT), with no empty element ("5,"
 * and ",5" are 400, as nginx and HAProxy answer).  Every value of every
 * field must be the same number; anything else makes the body length
 * ambiguous, which RFC 9112 6.3 says to refuse. */
static int merge_content_length(slice value, int64_t *cl)
{
    const char *p = value.p, *end = p + value.n;
    int64_t v;

    for (;;) {
        if ((v = read_decimal(&p, end)) < 0 || (*cl >= 0 && *cl != v))
            return -1;
        *cl = v;
        while (p < end && is_ows((unsigned char)*p))
            p++;
        if (p == end)
            return 0;
        if (*p++ != ',')
            return -1;
        while (p < end && is_ows((unsigned char)*p))
            p++;
    }
}

/* Host = uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2): an IP
 * literal in brackets, or a reg-name (unreserved, %, sub-delims), then
 * digits after a colon.  The empty reg-name is valid. */
static int valid_host(slice h)
{
    static const char reg[] = "-._~%!$&'()*+,;=";
#define ALNUM(c) (((c) >= '0' && (c) <= '9') || (((c) | 32) >= 'a' && ((c) | 32) <= 'z'))
    size_t i = 0;

    if (h.n && h.p[0] == '[') {
        for (i = 1; i < h.n && h.p[i] != ']'; i++)
            if (!h.p[i] || (!ALNUM(h.p[i]) && !strchr(reg, h.p[i]) && h.p[i] != ':'))
                return 0;
        if (i++ == h.n)
            return 0;
    } else {
        for (; i < h.n && h.p[i] != ':'; i++)
            if (!h.p[i] || (!ALNUM(h.p[i]) && !strchr(reg, h.p[i])))
                return 0;
    }
    if (i < h.n && h.p[i++] != ':')
        return 0;
    for (; i < h.n; i++)
        if (h.p[i] < '0' || h.p[i] > '9')
            return 0;
    return 1;
}

/* Repeated Content-Length values all agreed: leave the application one
 * field with one value (RFC 9110 8.6). */
static void single_content_length(http_request *req)
{
    size_t i, j, first = 1;
    slice rest, e;

    for (i = j = 0; i < req->nheaders; i++) {
        http_header *h = &req->headers[i];
        if (http_name_is(h->name, "content-length")) {
            if (!first)
                continue;
            rest = h->value;
            http_list_next(&rest, &e);
            h->value = e;
            first = 0;
        }
        req->headers[j++] = *h;
    }
    req->nheaders = j;
}

/* Derive the framing facts from the parsed fields.  Transfer-Encoding
 * rules, in order: "chunked" exactly once and last (else 400: the length
 * would be unknowable), then no other coding (else 501: we decode none). */
static int read_framing(http_request *req, int *status)
{
    int hosts = 0, te = 0, te_chunked = 0, te_last = 0, te_twice = 0;
    int te_unknown = 0, want_close = 0, want_keep = 0, upgrade_tok = 0;
    int upgrade = 0, cls = 0, cl_list = 0;
    int64_t cl = -1;
    slice rest, e;
    size_t i, host = 0;

    for (i = 0; i < req->nheaders; i++) {
        slice name = req->headers[i].name, value = req->headers[i].value;

        if (http_name_is(name, "host")) {
            hosts++;
            host = i;
        } else if (http_name_is(name, "content-length")) {
            if (merge_content_length(value, &cl) < 0)
                return bad(status, 400);
            cls++;
            cl_list |= memchr(value.p, ',', value.n) != NULL;
        } else if (http_name_is(name, "transfer-encoding")) {
            te = 1;
            te_last = 0;            /* an empty field ends the list unchunked */
            for (rest = value; http_list_next(&rest, &e);) {
                if (http_name_is(e, "chunked")) {
                    te_twice |= te_chunked;
                    te_chunked = te_last = 1;
                } else {
                    if (!http_is_token(e.p, e.n))
                        return bad(status, 400);
                    te_unknown = 1;
                    te_last = 0;
                }
            }
        } else if (http_name_is(name, "connection")) {
            for (rest = value; http_list_next(&rest, &e);) {
                want_close |= http_name_is(e, "close");
                want_keep |= http_name_is(e, "keep-alive");
                upgrade_tok |= http_name_is(e, "upgrade");
            }
        } else if (http_name_is(name, "upgrade")) {
            upgrade = 1;
        } else if (http_name_is(name, "expect")) {
            /* Other expectations are ignored rather than answered 417:
             * that is what most servers do and what clients expect. */
            if (http_name_is(value, "100-continue"))
                req->expect_continue = 1;
        }
    }

    if (hosts > 1 || (hosts == 0 && req->minor == 1))
        return bad(status, 400);
    /* RFC 9112 3.2.2: with an absolute-form target, its authority is the
     * host, whatever Host said; the application sees it as Host. */
    if (hosts && req->authority.n)
        req->headers[host].value = req->authority;
    if (hosts && !valid_host(req->headers[host].value))
        return bad(status, 400);
    if (cls > 1 || cl_list)
        single_content_length(req);
    if (te) {
        if (req->minor == 0 || cl >= 0 || !te_last || te_twice)
            return bad(status, 400);
        if (te_unknown)
            return bad(status, 501);
        req->chunked = 1;
    }
    req->content_length = cl;
    req->keep_alive = req->minor == 1 ? !want_close : want_keep && !want_close;
    req->upgrade = upgrade_tok && upgrade;
    return 0;
}

/* ---- the head ------------------------------------------------------------ */

/* First "\r\n\r\n" in [p, end), or NULL. */
static const char *find_head_end(const char *p, const char *end)
{
    const char *cr;

    while (end - p >= 4) {
        cr = memchr(p, '\r', (size_t)(end - p - 3));
        if (cr == NULL)
            return NULL;
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n')
            return cr;
        p = cr + 1;
    }
    return NULL;
}

int http_parse_request(const char *buf, size_t len, size_t last_len,
                       http_request *req, int *status)
{
    const char *end, *line_end;
    size_t start = 0, from, i;
    int empty = 0, too_many = 0;
    ssize_t r;

    req->nheaders = 0;
    req->authority = (slice){NULL, 0};
    req->content_length = -1;
    req->chunked = req->keep_alive = req->expect_continue = req->upgrade = req->h2 = 0;

    while (start < len && buf[start] == '\r') {
        if (empty == HTTP_MAX_EMPTY_LINES)
            break;                  /* the request line parser refuses it */
        if (start + 1 == len)
            return HTTP_INCOMPLETE;
        if (buf[start + 1] != '\n')
            return bad(status, 400);
        start += 2;
        empty++;
    }
    if (start == len)
        return HTTP_INCOMPLETE;

    /* The previous call scanned buf[0..last_len) without finding the end;
     * only its last three bytes may begin the terminator. */
    from = (last_len <= len && last_len > start + 3) ? last_len - 3 : start;
    end = find_head_end(buf + from, buf + len);
    if (end == NULL) {
        r = parse_request_line(buf + start, len - start, req, status);
        if (r == HTTP_BAD)
            return HTTP_BAD;
        /* a bare CR or LF past the request line will never end the head */
        for (i = r > 0 && from < start + (size_t)r ? start + (size_t)r : from;
             r > 0 && i < len; i++)
            if ((buf[i] == '\n' && buf[i - 1] != '\r') ||
                (buf[i] == '\r' && i + 1 < len && buf[i + 1] != '\n'))
                return bad(status, 400);
        return HTTP_INCOMPLETE;
    }
    if ((size_t)(end - buf) > (size_t)INT_MAX - 4)
        return bad(status, 431);

    /* Every line of the head ends at or before line_end, the CRLF that
     * ends the last field line (or the request line). */
    line_end = end + 2;
    r = parse_request_line(buf + start, (size_t)(line_end - buf) - start,
                           req, status);
    if (r < 0)          /* BAD; never INCOMPLETE, as a CRLF is in range */
        return r == HTTP_BAD ? HTTP_BAD : bad(status, 400);

    /* Lines past HTTP_MAX_HEADERS are still checked, into a scratch
     * field: a malformed one is 400 however the head arrived (the early
     * bare CR/LF check above sees it before the count). */
    for (i = start + (size_t)r; buf + i < line_end; i += (size_t)r) {
        http_header spare;
        int over = req->nheaders == HTTP_MAX_HEADERS;
        r = parse_field_line(buf + i, (size_t)(line_end - buf) - i,
                             over ? &spare : &req->headers[req->nheaders]);
        if (r < 0)
            return bad(status, 400);
        too_many |= over;
        req->nheaders += !over;
    }
    if (too_many)
        return bad(status, 431);
    if (read_framing(req, status) < 0)
        return HTTP_BAD;
    return (int)(end - buf) + 4;
}

/* ---- chunked bodies ------------------------------------------------------ */

enum {
    CK_SIZE = 0,        /* hex digits; 0 so a zeroed struct is a fresh one */
    CK_BWS,             /* whitespace after the size: a ';' must follow */
    CK_EXT,             /* after ';': BWS, then a name */
    CK_EXT_NAME,        /* in chunk-ext-name */
    CK_EXT_AFTER_NAME,  /* BWS after a name: '=', ';' or the end */
    CK_EXT_EQ,          /* after '=': BWS, then a token or a quoted-string */
    CK_EXT_TOKEN,       /* in a token value */
    CK_EXT_QUOTED,      /* in a quoted-string value */
    CK_EXT_ESCAPE,      /* after '\' in a quoted-string */
    CK_EXT_AFTER_VAL,   /* BWS after a value: ';' or the end */
    CK_SIZE_LF,         /* LF of the size line */
    CK_DATA,
    CK_DATA_CR,         /* CRLF after chunk-data */
    CK_DATA_LF,
    CK_TRAILER_LINE,    /* start of a trailer field line or the final CRLF */
    CK_TRAILER_NAME,    /* in a trailer field name, up to ':' */
    CK_TRAILER,         /* in a trailer field value */
    CK_TRAILER_LF,
    CK_END_LF,          /* LF of the empty line that ends the body */
    CK_DONE
};

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* One byte of a chunk extension (RFC 9112 7.1.1): the next state, or -1.
 * CR is the caller's: it ends the line in the states that complete one. */
static int ext_step(int st, unsigned char c)
{
    int ows = is_ows(c), tc = is_tchar(c);
    switch (st) {
    case CK_BWS:        return ows ? CK_BWS : c == ';' ? CK_EXT : -1;
    case CK_EXT:        return ows ? CK_EXT : tc ? CK_EXT_NAME : -1;
    case CK_EXT_NAME:   return tc ? CK_EXT_NAME : ows ? CK_EXT_AFTER_NAME
                             : c == '=' ? CK_EXT_EQ : c == ';' ? CK_EXT : -1;
    case CK_EXT_AFTER_NAME:
                        return ows ? CK_EXT_AFTER_NAME : c == '=' ? CK_EXT_EQ
                             : c == ';' ? CK_EXT : -1;
    case CK_EXT_EQ:     return ows ? CK_EXT_EQ : c == '"' ? CK_EXT_QUOTED
                             : tc ? CK_EXT_TOKEN : -1;
    case CK_EXT_TOKEN:  return tc ? CK_EXT_TOKEN : ows ? CK_EXT_AFTER_VAL
                             : c == ';' ? CK_EXT : -1;
    case CK_EXT_QUOTED: /* qdtext: HTAB, SP, VCHAR but '"' and '\', obs-text */
        return c == '"' ? CK_EXT_AFTER_VAL : c == '\\' ? CK_EXT_ESCAPE
             : (c == '\t' || c >= 0x20) && c != 0x7f ? CK_EXT_QUOTED : -1;
    case CK_EXT_ESCAPE: return (c == '\t' || c >= 0x20) && c != 0x7f ? CK_EXT_QUOTED : -1;
    case CK_EXT_AFTER_VAL:
                        return ows ? CK_EXT_AFTER_VAL : c == ';' ? CK_EXT : -1;
    }
    return -1;
}

/* Decode in place: data bytes are moved down over the framing, so the
 * output never overtakes the input.  Everything but chunk-data is taken
 * one byte at a time, which makes the result independent of how the
 * input is split across calls. */
ssize_t http_chunked_decode(http_chunked *d, char *buf, size_t *len)
{
    size_t src = 0, dst = 0, n = *len, take;
    unsigned char c;
    int v;

    while (src < n && d->state != CK_DONE) {
        if (d->state == CK_DATA) {
            take = d->left < n - src ? (size_t)d->left : n - src;
            memmove(buf + dst, buf + src, take);
            dst += take;
            src += take;
            d->left -= take;
            if (d->left == 0)
                d->state = CK_DATA_CR;
            continue;
        }
        c = (unsigned char)buf[src++];
        switch (d->state) {
        case CK_SIZE:
            if ((v = hex_value(c)) >= 0) {
                /* left >= 2^59 would make left * 16 reach 2^63. */
                if (d->ndigits == HTTP_MAX_CHUNK_DIGITS || d->left >> 59)
                    return HTTP_BAD;
                d->left = d->left * 16 + (unsigned)v;
                d->ndigits++;
                break;
            }
            if (d->ndigits == 0)
                return HTTP_BAD;
            if (c == '\r') {
                d->state = CK_SIZE_LF;
                break;
            }
            if (c != ';' && !is_ows(c))
                return HTTP_BAD;
            d->state = c == ';' ? CK_EXT : CK_BWS;
            d->count = 1;           /* extension bytes, from BWS or ';' */
            break;
        case CK_BWS: case CK_EXT: case CK_EXT_NAME: case CK_EXT_AFTER_NAME:
        case CK_EXT_EQ: case CK_EXT_TOKEN: case CK_EXT_QUOTED: case CK_EXT_ESCAPE:
        case CK_EXT_AFTER_VAL:
            if (c == '\r' && (d->state == CK_EXT_NAME || d->state == CK_EXT_AFTER_NAME ||
                              d->state == CK_EXT_TOKEN || d->state == CK_EXT_AFTER_VAL)) {
                d->state = CK_SIZE_LF;      /* a complete extension ends the line */
                break;
            }
            if (++d->count > HTTP_MAX_CHUNK_EXT || (v = ext_step(d->state, c)) < 0)
                return HTTP_BAD;            /* "5 \r\n", "5;\r\n", 5;a=\r\n", ... */
            d->state = v;
            break;
        case CK_SIZE_LF:
            if (c != '\n')
                return HTTP_BAD;
            d->state = d->left > 0 ? CK_DATA : CK_TRAILER_LINE;
            d->ndigits = 0;
            d->count = 0;
            break;
        case CK_DATA_CR:
            if (c != '\r')
                return HTTP_BAD;
            d->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (c != '\n')
                return HTTP_BAD;
            d->state = CK_SIZE;
            break;
        case CK_TRAILER_LINE:
            if (c == '\r') {
                d->state = CK_END_LF;
                break;
            }
            if (!is_tchar(c))
                return HTTP_BAD;            /* obs-fold, an empty name, ... */
            d->state = CK_TRAILER_NAME;
            /* fall through */
        case CK_TRAILER_NAME:               /* a field line, as in the head */
        case CK_TRAILER:
            if (++d->trailer > HTTP_MAX_TRAILER)
                return HTTP_BAD;
            if (d->state == CK_TRAILER_NAME) {
                if (c == ':')
                    d->state = CK_TRAILER;
                else if (!is_tchar(c))
                    return HTTP_BAD;
            } else if (c == '\r') {
                d->state = CK_TRAILER_LF;
            } else if (!is_field_byte(c)) {
                return HTTP_BAD;
            }
            break;
        case CK_TRAILER_LF:
            if (c != '\n' || ++d->trailer > HTTP_MAX_TRAILER)
                return HTTP_BAD;
            d->state = CK_TRAILER_LINE;
            break;
        case CK_END_LF:
            if (c != '\n')
                return HTTP_BAD;
            d->state = CK_DONE;
            break;
        default:
            return HTTP_BAD;
        }
    }

    *len = dst;
    if (d->state != CK_DONE)
        return HTTP_INCOMPLETE;
    /* Bytes after the body (a pipelined request) follow the data. */
    memmove(buf + dst, buf + src, n - src);
    return (ssize_t)(n - src);
}

/* ---- reason phrases and Date ---------------------------------------------- */

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";                case 101: return "Switching Protocols";
    case 102: return "Processing";              case 103: return "Early Hints";
    case 200: return "OK";                      case 201: return "Created";
    case 202: return "Accepted";                case 203: return "Non-Authoritative Information";
    case 204: return "No Content";              case 205: return "Reset Content";
    case 206: return "Partial Content";         case 207: return "Multi-Status";
    case 208: return "Already Reported";        case 226: return "IM Used";
    case 300: return "Multiple Choices";        case 301: return "Moved Permanently";
    case 302: return "Found";                   case 303: return "See Other";
    case 304: return "Not Modified";            case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";      case 308: return "Permanent Redirect";
    case 400: return "Bad Request";             case 401: return "Unauthorized";
    case 402: return "Payment Required";        case 403: return "Forbidden";
    case 404: return "Not Found";               case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";          case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";         case 409: return "Conflict";
    case 410: return "Gone";                    case 411: return "Length Required";
    case 412: return "Precondition Failed";     case 413: return "Content Too Large";
    case 414: return "URI Too Long";            case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";   case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";            case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";   case 423: return "Locked";
    case 424: return "Failed Dependency";       case 425: return "Too Early";
    case 426: return "Upgrade Required";        case 428: return "Precondition Required";
    case 429: return "Too Many Requests";       case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";   case 501: return "Not Implemented";
    case 502: return "Bad Gateway";             case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";         case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates"; case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";           case 510: return "Not Extended";
    case 511: return "Network Authentication Required";
    }
    return "Unknown";
}

/* IMF-fixdate (RFC 9110 5.6.7).  The names are spelled out rather than
 * taken from strftime, whose %a and %b follow the locale Python may set.
 * Each thread keeps its own copy, so no lock is needed. */
const char *http_date(void)
{
    static const char days[7][4] = {
        "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
    };
    static const char months[12][4] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun",
        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
    };
    static _Thread_local char date[64];
    static _Thread_local time_t last;
    time_t now = time(NULL);
    struct tm tm;

    if (now == last && date[0] != '\0')
        return date;
    if (gmtime_r(&now, &tm) == NULL)
        return date[0] != '\0' ? date : "Thu, 01 Jan 1970 00:00:00 GMT";
    snprintf(date, sizeof date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    last = now;
    return date;
}

/* Percent-decode in[0,n) into out (room for n bytes); a '%' not followed
 * by two hex digits stays as it is.  Returns the decoded length. */
size_t http_pct_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < n && (hi = hex_value((unsigned char)in[i + 1])) >= 0 &&
            (lo = hex_value((unsigned char)in[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

const http_header *http_find_header(const http_request *rq, const char *lower, int last)
{
    const http_header *found = NULL;
    for (size_t i = 0; i < rq->nheaders && !(found && !last); i++)
        if (http_name_is(rq->headers[i].name, lower))
            found = &rq->headers[i];
    return found;
}

/* Whether p[0,n) may be written as a field value or a reason phrase:
 * no control byte but HTAB (RFC 9110 5.5, RFC 9112 4).  The one rule for
 * every head and trailer granc writes: a CR or LF from the app would
 * split the head, a NUL would cut it short in a C string. */
int http_value_ok(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && is_field_byte((unsigned char)p[i]))
        i++;
    return i == n;
}

/* Whether the comma list v[0,n) has an element equal to lower (any case). */
int http_has_token(const char *v, size_t n, const char *lower)
{
    slice rest = {v, n}, e;

    while (http_list_next(&rest, &e))
        if (http_name_is(e, lower))
            return 1;
    return 0;
}

/* Write v in decimal into the bytes before end; returns its first digit. */
char *http_utoa(char *end, uint64_t v)
{
    /* two digits a division: a port or a length takes half the steps */
    static const char pairs[201] =
        "0001020304050607080910111213141516171819202122232425262728293031323334353637383940"
        "4142434445464748495051525354555657585960616263646566676869707172737475767778798081"
        "828384858687888990919293949596979899";

    for (; v >= 100; v /= 100)
        memcpy(end -= 2, pairs + v % 100 * 2, 2);
    if (v >= 10)
        memcpy(end -= 2, pairs + v * 2, 2);
    else
        *--end = (char)('0' + v);
    return end;
}

/* ---- response heads ------------------------------------------------------ */

/* A bounded writer: counts every byte, stores each piece that fits.  A
 * head that does not fit is written again into more room, so the pieces
 * past cap need not be cut to fit; and a constant piece's memcpy, of a
 * known size, is then a move or two in place of a call. */
typedef struct hwriter {
    char *p;
    size_t n, cap;
} hwriter;

static inline void put(hwriter *w, const char *s, size_t n)
{
    if (w->n + n <= w->cap)
        memcpy(w->p + w->n, s, n);
    w->n += n;
}
#define PUTS(w, s) put(w, s, sizeof(s) - 1)

/* The response header names the server looks at, told apart by length
 * first: most names are none of them and cost one switch. */
enum { H_OTHER, H_TE, H_KEEP_ALIVE, H_CONNECTION, H_CLEN, H_SERVER, H_DATE };

static int special_header(slice s)
{
    switch (s.n) {
    case 4:  return http_name_is(s, "date") ? H_DATE : H_OTHER;
    case 6:  return http_name_is(s, "server") ? H_SERVER : H_OTHER;
    case 10: return http_name_is(s, "connection") ? H_CONNECTION
                  : http_name_is(s, "keep-alive") ? H_KEEP_ALIVE : H_OTHER;
    case 14: return http_name_is(s, "content-length") ? H_CLEN : H_OTHER;
    case 17: return http_name_is(s, "transfer-encoding") ? H_TE : H_OTHER;
    }
    return H_OTHER;
}

ssize_t http_resp_head(resp_head *h, const char *reason, size_t rn, const http_header *f,
                       size_t nf, int64_t total, const http_request *rq, int can_keep,
                       char *out, size_t cap)
{
    hwriter w = { out, 0, cap };
    char num[24] = "HTTP/1.1 000 ";
    unsigned code = (unsigned)h->code % 1000;
    int has_server = 0, has_date = 0, close = 0;

    h->clen = -1;
    h->chunked = 0;
    if (!reason) {
        reason = http_reason(h->code);
        rn = strlen(reason);
    }
    num[9] = (char)('0' + code / 100);
    num[10] = (char)('0' + code / 10 % 10);
    num[11] = (char)('0' + code % 10);
    put(&w, num, 13);
    put(&w, reason, rn);
    PUTS(&w, "\r\n");
    for (size_t i = 0; i < nf; i++) {
        slice k = f[i].name, v = f[i].value;
        /* framing and connection management are the server's business */
        int special = special_header(k);
        if (special == H_TE || special == H_KEEP_ALIVE)
            continue;
        if (special == H_CONNECTION) {
            close |= http_has_token(v.p, v.n, "close");
            continue;
        }
        if (special == H_CLEN) {
            if (h->code < 200 || h->code == 204)
                continue;               /* RFC 9110 8.6: never on these */
            if (http_decimal(v, &h->clen) < 0)
                return HTTP_BAD;
        }
        has_server |= special == H_SERVER;
        has_date |= special == H_DATE;
        put(&w, k.p, k.n);
        PUTS(&w, ": ");
        put(&w, v.p, v.n);
        PUTS(&w, "\r\n");
    }
    if (!has_server)
        PUTS(&w, "server: granc\r\n");
    if (!has_date) {
        PUTS(&w, "date: ");
        put(&w, http_date(), 29);
        PUTS(&w, "\r\n");
    }
    int bodyless = h->code < 200 || h->code == 204 || h->code == 304;
    h->nobody = bodyless || (rq->method.n == 4 && !memcmp(rq->method.p, "HEAD", 4));
    if (h->clen < 0 && !bodyless) {
        if (total >= 0) {
            char *d = http_utoa(num + sizeof(num), (uint64_t)total);
            PUTS(&w, "content-length: ");
            put(&w, d, (size_t)(num + sizeof(num) - d));
            PUTS(&w, "\r\n");
            h->clen = total;
        } else if (rq->minor == 1) {
            if (!h->nobody)
                PUTS(&w, "transfer-encoding: chunked\r\n");
            h->chunked = !h->nobody;
        } else if (!h->nobody) {
            close = 1;                  /* HTTP/1.0: the end of the body is the close */
        }
    }
    h->keep = !close && can_keep && h->code != 101;
    if (h->code == 101)             /* the connection is the new protocol's now */
        PUTS(&w, "connection: Upgrade\r\n");
    else if (!h->keep)
        PUTS(&w, "connection: close\r\n");
    else if (rq->minor == 0)
        PUTS(&w, "connection: keep-alive\r\n");
    PUTS(&w, "\r\n");
    return (ssize_t)w.n;
}
