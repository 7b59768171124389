/* unit_http.c -- TAP tests for http.c.
 *
 * Every input is copied to the very end of a writable mapping that is
 * followed by a PROT_NONE page, so a parser that reads one byte too far
 * crashes instead of passing by luck.  Build with ASan/UBSan (see the
 * Makefile); links only http.c.
 */
#include "granc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Largest input: a 414 target plus a few lines. */
#define AREA_BYTES (64 * 1024)

#include "tap.h"
#include "http.h"

/* ---- request parser ------------------------------------------------------ */

static http_request req;    /* large: keep it off the stack */
static http_request req2;
static const char *req_buf; /* the guarded copy req's slices point into */

static int slice_is(slice s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static int same_slice(slice a, slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static int same_request(const http_request *a, const http_request *b)
{
    size_t i;

    if (!same_slice(a->method, b->method) || !same_slice(a->target, b->target)
        || !same_slice(a->path, b->path) || !same_slice(a->query, b->query)
        || a->minor != b->minor || a->nheaders != b->nheaders
        || a->content_length != b->content_length || a->chunked != b->chunked
        || a->keep_alive != b->keep_alive || a->upgrade != b->upgrade
        || a->expect_continue != b->expect_continue)
        return 0;
    for (i = 0; i < a->nheaders; i++)
        if (!same_slice(a->headers[i].name, b->headers[i].name)
            || !same_slice(a->headers[i].value, b->headers[i].value))
            return 0;
    return 1;
}

/* Feed s[0..n) growing one byte at a time (last_len = previous length).
 * Before the end every call must say INCOMPLETE, or BAD with want_status
 * (early rejection); the last call must give want_ret / want_status and,
 * when accepted, the same request as the whole-buffer parse in req. */
static int bytewise(const char *s, size_t n, int want_ret, int want_status)
{
    size_t k, last = 0;
    int r = HTTP_INCOMPLETE, st = 0;

    for (k = 1; k <= n; k++) {
        st = 0;
        r = http_parse_request(guarded(s, k), k, last, &req2, &st);
        if (k < n && r == HTTP_BAD && want_ret == HTTP_BAD)
            return st == want_status;   /* refused early, same answer */
        if (k < n && r != HTTP_INCOMPLETE)
            return 0;
        last = k;
    }
    if (r != want_ret)
        return 0;
    if (r == HTTP_BAD)
        return st == want_status;
    return r < 0 || same_request(&req, &req2);
}

/* Parse s whole and expect the head to be head_len bytes (the whole
 * string when 0); leaves the result in req for the caller's checks. */
static int accept_head(const char *desc, const char *s, size_t head_len)
{
    size_t n = strlen(s);
    int st = 0, r;

    if (head_len == 0)
        head_len = n;
    req_buf = guarded(s, n);
    r = http_parse_request(req_buf, n, 0, &req, &st);
    ok(r == (int)head_len, "accept: %s (got %d, status %d)", desc, r, st);
    /* bytewise() compares with req, whose slices must survive it. */
    req_buf = (const char *)area;
    memcpy(area, s, n);
    http_parse_request(req_buf, n, 0, &req, &st);
    ok(bytewise(s, head_len, (int)head_len, 0), "accept bytewise: %s", desc);
    /* bytewise() overwrote the area: parse again for the caller. */
    req_buf = guarded(s, n);
    return http_parse_request(req_buf, n, 0, &req, &st) == (int)head_len;
}

static void reject(const char *desc, const char *s, size_t n, int status)
{
    int st = 0, r;

    r = http_parse_request(guarded(s, n), n, 0, &req, &st);
    ok(r == HTTP_BAD && st == status, "reject %d: %s (got %d/%d)",
       status, desc, r, st);
    if (n < 4096)
        ok(bytewise(s, n, HTTP_BAD, status), "reject bytewise: %s", desc);
}

#define REJECT(desc, s, status) reject(desc, s, sizeof(s) - 1, status)

static const char *header(const char *lower)
{
    static char v[256];
    size_t i;

    for (i = 0; i < req.nheaders; i++)
        if (http_name_is(req.headers[i].name, lower)) {
            snprintf(v, sizeof v, "%.*s", (int)req.headers[i].value.n,
                     req.headers[i].value.p);
            return v;
        }
    return NULL;
}

static void test_accept(void)
{
    accept_head("simple GET",
                "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0);
    ok(slice_is(req.method, "GET") && slice_is(req.path, "/") &&
       req.query.n == 0 && req.minor == 1, "GET: method, path, version");
    ok(req.keep_alive && req.content_length == -1 && !req.chunked &&
       !req.upgrade && !req.expect_continue, "GET: default framing");
    ok(req.method.p == req_buf && req.nheaders == 1 &&
       slice_is(req.headers[0].name, "Host") &&
       slice_is(req.headers[0].value, "example.com"), "GET: zero-copy slices");

    accept_head("query", "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    ok(slice_is(req.path, "/a/b") && slice_is(req.query, "x=1&y=%20") &&
       slice_is(req.target, "/a/b?x=1&y=%20"), "query split at '?'");
    accept_head("empty query", "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    ok(slice_is(req.path, "/p") && req.query.n == 0, "empty query");

    accept_head("OWS trimmed",
                "POST /x HTTP/1.1\r\nHost:h\r\nX-A:   v  a \t\r\nX-Empty:\r\n"
                "X-Sp:   \r\nX-Obs: caf\xc3\xa9\x80\xff\r\n\r\n", 0);
    ok(req.nheaders == 5 && slice_is(req.headers[1].name, "X-A") &&
       slice_is(req.headers[1].value, "v  a"), "value OWS trimmed, inner kept");
    ok(slice_is(req.headers[2].value, "") && slice_is(req.headers[3].value, ""),
       "empty values");
    ok(slice_is(req.headers[4].value, "caf\xc3\xa9\x80\xff"), "obs-text value");

    accept_head("tchar method", "M-SEARCH /x HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    ok(slice_is(req.method, "M-SEARCH"), "method with '-' is a token");

    accept_head("absolute-form",
                "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: x\r\n\r\n",
                0);
    ok(slice_is(req.path, "/a/b") && slice_is(req.query, "c=d") &&
       slice_is(req.target, "http://example.com:8080/a/b?c=d"),
       "absolute-form: path and query");
    accept_head("absolute-form, no path",
                "GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    ok(slice_is(req.path, "/") && req.query.n == 0,
       "absolute-form: scheme case-insensitive, empty path is /");
    accept_head("absolute-form, query only",
                "GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    ok(slice_is(req.path, "/") && slice_is(req.query, "q=1"),
       "absolute-form: '?' right after the authority");

    accept_head("asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    ok(slice_is(req.path, "*") && req.query.n == 0, "asterisk-form: path *");

    accept_head("leading CRLFs", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    ok(slice_is(req.method, "GET"), "leading CRLFs skipped");
    accept_head("four leading CRLFs",
                "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0);

    accept_head("pipelined bytes after the head",
                "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\n", 28);
    ok(slice_is(req.path, "/1"), "pipelined: first request only");

    accept_head("HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", 0);
    ok(req.minor == 0 && !req.keep_alive && req.nheaders == 0,
       "HTTP/1.0: no Host needed, closes by default");
    accept_head("HTTP/1.0 keep-alive",
                "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0);
    ok(req.minor == 0 && req.keep_alive, "HTTP/1.0 + keep-alive keeps");
    accept_head("HTTP/1.0 keep-alive, close",
                "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0);
    ok(req.minor == 0 && !req.keep_alive, "HTTP/1.0: close wins over keep-alive");
    accept_head("HTTP/1.1 close",
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n", 0);
    ok(!req.keep_alive, "HTTP/1.1 + close (in a list) closes");
    accept_head("HTTP/1.1 keep-alive token",
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", 0);
    ok(req.keep_alive, "HTTP/1.1 + keep-alive keeps");
    accept_head("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 0);
    ok(req.minor == 1 && req.keep_alive, "HTTP/1.2 served as 1.1");

    accept_head("Content-Length",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n", 0);
    ok(req.content_length == 42 && !req.chunked, "Content-Length: 42");
    accept_head("Content-Length list",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7 , 7\r\n"
                "content-length: 7\r\n\r\n", 0);
    ok(req.content_length == 7, "identical Content-Lengths merge");
    ok(req.nheaders == 2 && !strcmp(header("content-length"), "7"),
       "the app is left one Content-Length field of one value");
    accept_head("absolute-form host",
                "GET http://a.example:8080/p?q HTTP/1.1\r\nHost: b.example\r\n\r\n", 0);
    ok(!strcmp(header("host"), "a.example:8080") && slice_is(req.path, "/p"),
       "absolute-form: the target's authority is the Host");
    accept_head("IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 0);
    accept_head("empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 0);
    accept_head("reg-name Host", "GET / HTTP/1.1\r\nHost: a-b_c.~x%41:8\r\n\r\n", 0);
    accept_head("Content-Length 18 digits",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
                "999999999999999999\r\n\r\n", 0);
    ok(req.content_length == 999999999999999999LL, "18-digit Content-Length");
    accept_head("Content-Length 0",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 000\r\n\r\n", 0);
    ok(req.content_length == 0, "Content-Length: 000 is 0");

    accept_head("chunked",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n",
                0);
    ok(req.chunked && req.content_length == -1, "Transfer-Encoding: chunked");

    accept_head("Expect",
                "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
                "Content-Length: 1\r\n\r\n", 0);
    ok(req.expect_continue, "Expect: 100-continue (any case)");
    accept_head("other Expect", "GET / HTTP/1.1\r\nHost: h\r\nExpect: x\r\n\r\n",
                0);
    ok(!req.expect_continue, "other expectations ignored");

    accept_head("upgrade",
                "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade"
                "\r\nUpgrade: websocket\r\n\r\n", 0);
    ok(req.upgrade && req.keep_alive, "Connection: upgrade + Upgrade");
    ok(header("upgrade") && strcmp(header("upgrade"), "websocket") == 0,
       "Upgrade value");
    accept_head("upgrade token only",
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", 0);
    ok(!req.upgrade, "Connection: upgrade without Upgrade");
    accept_head("Upgrade header only",
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", 0);
    ok(!req.upgrade, "Upgrade without Connection: upgrade");
    accept_head("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 0);
}

static void test_reject(void)
{
    /* line endings */
    REJECT("bare LF ends the request line", "GET / HTTP/1.1\nHost: h\r\n\r\n",
           400);
    REJECT("bare LF ends a field", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
           400);
    REJECT("bare CR in a value", "GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n", 400);
    REJECT("bare CR before the request line", "\rGET / HTTP/1.1\r\n\r\n", 400);
    REJECT("LF before the request line", "\nGET / HTTP/1.1\r\n\r\n", 400);
    REJECT("five leading CRLFs",
           "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    /* request line */
    REJECT("two SP after method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("two SP after target", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("HTAB as separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("non-token method", "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("SP after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    REJECT("lower-case http", "GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("byte after HTTP/1.1", "GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400);
    REJECT("HTTP/1.1 CR CR", "GET / HTTP/1.1\r\rHost: h\r\n\r\n", 400);
    REJECT("version without dot", "GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
    REJECT("version without minor", "GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    REJECT("two-digit major", "GET / HTTP/10.1\r\nHost: h\r\n\r\n", 400);
    REJECT("no version", "GET /\r\nHost: h\r\n\r\n", 400);
    REJECT("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    REJECT("HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
    REJECT("HTTP/3.0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505);
    REJECT("CTL in target", "GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("obs-text in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
           400);
    /* target forms */
    REJECT("authority-form", "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("asterisk with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("asterisk plus bytes", "OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("other scheme", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("userinfo", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    /* fields */
    REJECT("obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400);
    REJECT("HTAB obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
           400);
    REJECT("SP before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    REJECT("empty name", "GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", 400);
    REJECT("non-token name", "GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n", 400);
    REJECT("no colon", "GET / HTTP/1.1\r\nHost: h\r\nfoo\r\n\r\n", 400);
    REJECT("NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400);
    REJECT("DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400);
    REJECT("ESC in value", "GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[0m\r\n\r\n", 400);
    /* Host */
    REJECT("no Host on 1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
    REJECT("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400);
    REJECT("two Hosts on 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
           400);
    /* Content-Length */
    REJECT("CL not a number",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400);
    REJECT("CL negative",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400);
    REJECT("CL with sign",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400);
    REJECT("CL hex", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n",
           400);
    REJECT("CL empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
           400);
    REJECT("CL inner space",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400);
    REJECT("CL 19 digits",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000000"
           "\r\n\r\n", 400);
    REJECT("CL list differs",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400);
    REJECT("CL trailing comma",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n", 400);
    REJECT("CL trailing comma and space",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 ,\r\n\r\n", 400);
    REJECT("CL leading comma",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,5\r\n\r\n", 400);
    REJECT("CL empty list element",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,,5\r\n\r\n", 400);
    REJECT("CL only a comma",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,\r\n\r\n", 400);
    REJECT("CL fields differ",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
           "Content-Length: 50\r\n\r\n", 400);
    /* Transfer-Encoding */
    REJECT("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    REJECT("Host with a path", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400);
    REJECT("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n", 400);
    REJECT("Host port not digits", "GET / HTTP/1.1\r\nHost: x:abc\r\n\r\n", 400);
    REJECT("Host with two ports", "GET / HTTP/1.1\r\nHost: x:1:2\r\n\r\n", 400);
    REJECT("Host bracket unclosed", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400);
    REJECT("Host non-ASCII", "GET / HTTP/1.1\r\nHost: \xe9x\r\n\r\n", 400);
    REJECT("bare LF ends a field, head unfinished",
           "GET / HTTP/1.1\r\nHost: x\nA: b\r\n", 400);
    REJECT("bare LF as the last line", "GET / HTTP/1.1\r\nHost: x\r\n\n", 400);
    REJECT("TE chunked twice",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked"
           "\r\n\r\n", 400);
    REJECT("TE chunked twice across fields",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
           "Transfer-Encoding: chunked\r\n\r\n", 400);
    REJECT("TE chunked not last",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip"
           "\r\n\r\n", 400);
    REJECT("TE without chunked",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    REJECT("TE empty",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400);
    REJECT("TE chunked then empty field",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
           "Transfer-Encoding: \r\n\r\n", 400);
    REJECT("TE gzip, chunked",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked"
           "\r\n\r\n", 501);
    REJECT("TE identity then chunked across fields",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n"
           "Transfer-Encoding: chunked\r\n\r\n", 501);
    REJECT("TE with CL",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
           "Transfer-Encoding: chunked\r\n\r\n", 400);
    REJECT("TE in HTTP/1.0",
           "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

static void test_limits(void)
{
    static char s[AREA_BYTES];
    size_t n, i;
    int r, st;

    /* Target of exactly HTTP_MAX_TARGET bytes: accepted. */
    n = (size_t)sprintf(s, "GET /");
    memset(s + n, 'a', HTTP_MAX_TARGET - 1);
    n += HTTP_MAX_TARGET - 1;
    n += (size_t)sprintf(s + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    st = 0;
    r = http_parse_request(guarded(s, n), n, 0, &req, &st);
    ok(r == (int)n && req.target.n == HTTP_MAX_TARGET, "target of %d accepted",
       HTTP_MAX_TARGET);

    /* One more byte: 414, and early, before the head is complete. */
    n = (size_t)sprintf(s, "GET /");
    memset(s + n, 'a', HTTP_MAX_TARGET);
    n += HTTP_MAX_TARGET;
    s[n] = '\0';
    reject("target too long (partial line)", s, n, 414);
    n += (size_t)sprintf(s + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    reject("target too long", s, n, 414);

    /* HTTP_MAX_HEADERS fields: accepted; one more: 431. */
    n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (i = 1; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(s + n, "X-%zu: %zu\r\n", i, i);
    n += (size_t)sprintf(s + n, "\r\n");
    st = 0;
    r = http_parse_request(guarded(s, n), n, 0, &req, &st);
    ok(r == (int)n && req.nheaders == HTTP_MAX_HEADERS, "%d fields accepted",
       HTTP_MAX_HEADERS);
    n -= 2;
    n += (size_t)sprintf(s + n, "X-Last: y\r\n\r\n");
    reject("too many fields", s, n, 431);
}

/* Early rejection and incremental scanning with partial heads. */
static void test_partial(void)
{
    static const char full[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    int r, st = 0;

    REJECT("garbage before any CRLF", "\x16\x03\x01\x02", 400);
    REJECT("HTTP/2 preface", "PRI * HTTP/2.0\r\n", 505);
    REJECT("bad version, head incomplete", "GET / XTTP", 400);
    r = http_parse_request(guarded(full, 16), 16, 0, &req, &st);
    ok(r == HTTP_INCOMPLETE, "valid request line, no end yet: incomplete");
    r = http_parse_request(guarded("", 0), 0, 0, &req, &st);
    ok(r == HTTP_INCOMPLETE, "empty buffer: incomplete");
    r = http_parse_request(guarded("\r\n\r\n", 4), 4, 0, &req, &st);
    ok(r == HTTP_INCOMPLETE, "only empty lines: incomplete");
    /* last_len past the start of the terminator must still find it. */
    r = http_parse_request(guarded(full, sizeof full - 1), sizeof full - 1,
                           sizeof full - 2, &req, &st);
    ok(r == (int)sizeof full - 1, "terminator straddling last_len found");
    r = http_parse_request(guarded(full, sizeof full - 1), sizeof full - 1,
                           17, &req, &st);
    ok(r == (int)sizeof full - 1, "last_len mid-head");
}

/* ---- chunked decoder ----------------------------------------------------- */

#define DEC_MAX (16 * 1024)

typedef struct dres {
    ssize_t ret;                /* BAD, INCOMPLETE, or bytes after the body */
    size_t outlen, restlen;
    char out[DEC_MAX];          /* decoded data */
    char rest[DEC_MAX];         /* bytes after the body */
} dres;

static dres whole, piece;

/* Decode s[0..n) fed in pieces cut at cuts[0..ncuts), each piece in its
 * own guarded buffer. */
static void decode_pieces(const char *s, size_t n, const size_t *cuts,
                          size_t ncuts, dres *res)
{
    http_chunked d;
    size_t i, a = 0, b, len;
    ssize_t r = HTTP_INCOMPLETE;
    char *p;

    memset(&d, 0, sizeof d);
    res->outlen = res->restlen = 0;
    for (i = 0; i <= ncuts; i++, a = b) {
        b = i < ncuts ? cuts[i] : n;
        if (r >= 0) {               /* body done: the rest is leftover */
            memcpy(res->rest + res->restlen, s + a, b - a);
            res->restlen += b - a;
            continue;
        }
        p = guarded(s + a, b - a);
        len = b - a;
        r = http_chunked_decode(&d, p, &len);
        if (r == HTTP_BAD)
            break;
        memcpy(res->out + res->outlen, p, len);
        res->outlen += len;
        if (r >= 0) {
            memcpy(res->rest, p + len, (size_t)r);
            res->restlen = (size_t)r;
        }
    }
    res->ret = r < 0 ? r : (ssize_t)res->restlen;
}

static int same_dres(const dres *a, const dres *b)
{
    if (a->ret != b->ret)
        return 0;
    if (a->ret == HTTP_BAD)
        return 1;
    return a->outlen == b->outlen && memcmp(a->out, b->out, a->outlen) == 0 &&
           a->restlen == b->restlen &&
           memcmp(a->rest, b->rest, a->restlen) == 0;
}

/* Every two-piece split and the byte-by-byte feed agree with the whole. */
static int split_invariant(const char *s, size_t n)
{
    static size_t cuts[DEC_MAX];
    size_t k;

    for (k = 0; k <= n; k++) {
        decode_pieces(s, n, &k, 1, &piece);
        if (!same_dres(&whole, &piece))
            return 0;
    }
    for (k = 1; k < n; k++)
        cuts[k - 1] = k;
    decode_pieces(s, n, cuts, n ? n - 1 : 0, &piece);
    return same_dres(&whole, &piece);
}

static void chunked_ok(const char *desc, const char *s, size_t n,
                       const char *want, ssize_t want_ret)
{
    decode_pieces(s, n, NULL, 0, &whole);
    ok(whole.ret == want_ret && whole.outlen == strlen(want) &&
       memcmp(whole.out, want, whole.outlen) == 0,
       "chunked: %s (ret %zd, %zu bytes)", desc, whole.ret, whole.outlen);
    ok(split_invariant(s, n), "chunked split anywhere: %s", desc);
}

static void chunked_bad(const char *desc, const char *s, size_t n)
{
    decode_pieces(s, n, NULL, 0, &whole);
    ok(whole.ret == HTTP_BAD, "chunked reject: %s (ret %zd)", desc, whole.ret);
    ok(n > 4096 || split_invariant(s, n), "chunked reject split: %s", desc);
}

#define CHUNKED_OK(desc, s, want, ret) \
    chunked_ok(desc, s, sizeof(s) - 1, want, ret)
#define CHUNKED_BAD(desc, s) chunked_bad(desc, s, sizeof(s) - 1)

static void test_chunked(void)
{
    static char s[DEC_MAX];
    size_t n;

    CHUNKED_OK("simple", "5\r\nhello\r\n0\r\n\r\n", "hello", 0);
    CHUNKED_OK("multi-chunk, both hex cases",
               "3\r\nabc\r\nA\r\n0123456789\r\nb\r\nABCDEFGHIJK\r\n0\r\n\r\n",
               "abc0123456789ABCDEFGHIJK", 0);
    CHUNKED_OK("extensions",
               "5;name=value;q=\"a b\"\r\nhello\r\n1 ;x\r\n!\r\n0;end\r\n\r\n",
               "hello!", 0);
    CHUNKED_OK("trailers",
               "2\r\nhi\r\n0\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n", "hi", 0);
    CHUNKED_OK("bytes after the body",
               "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hi", 16);
    CHUNKED_OK("leading zeros, 16 digits",
               "0000000000000002\r\nhi\r\n000\r\n\r\n", "hi", 0);
    CHUNKED_OK("empty body", "0\r\n\r\n", "", 0);
    CHUNKED_OK("incomplete data", "5\r\nhel", "hel", HTTP_INCOMPLETE);
    CHUNKED_OK("incomplete trailer", "1\r\nx\r\n0\r\nX: y\r\n", "x",
               HTTP_INCOMPLETE);
    CHUNKED_OK("largest size", "7fffffffffffffff\r\nabc", "abc",
               HTTP_INCOMPLETE);
    decode_pieces("2\r\nhi\r\n0\r\n\r\nNEXT", 16, NULL, 0, &whole);
    ok(whole.restlen == 4 && memcmp(whole.rest, "NEXT", 4) == 0,
       "chunked: leftover bytes follow the data");

    CHUNKED_BAD("bad hex digit", "g\r\nx\r\n0\r\n\r\n");
    CHUNKED_BAD("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("leading space", " 5\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("sign", "+5\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("empty size", "\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("2^63", "8000000000000000\r\n");
    CHUNKED_BAD("2^64 - 1", "ffffffffffffffff\r\n");
    CHUNKED_BAD("bare LF after size", "5\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("bare CR after size", "5\rhello\r\n0\r\n\r\n");
    CHUNKED_BAD("BWS without ';'", "5 \r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("CTL in extension", "5;a=\x01\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("extension grammar: BWS, token and quoted values, escapes",
               "5 ; a = b ;c=\"x;\\\"y\" ; d\r\nhello\r\n0\r\n\r\n", "hello", 0);
    CHUNKED_BAD("';' without a name", "5;\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("'=' without a value", "5;a=\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("name with a space in it", "5;a b\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("value that is no token", "5;a=b/c\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("empty name before '='", "5;=b\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("quote open at the line end (a hidden request)",
                "5;a=\"\r\nhello\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("bare quote in a token", "5;a=b\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("two values", "5;a=b c\r\nhello\r\n0\r\n\r\n");
    CHUNKED_BAD("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n");
    CHUNKED_BAD("bare LF after data", "5\r\nhello\n0\r\n\r\n");
    CHUNKED_BAD("bare LF after last chunk", "0\r\n\n");
    CHUNKED_BAD("bare CR in trailer", "0\r\nX: a\rb\r\n\r\n");
    CHUNKED_BAD("bare LF ends trailer", "0\r\nX: a\n\r\n");
    CHUNKED_BAD("obs-fold in trailer", "0\r\nX: a\r\n b\r\n\r\n");
    CHUNKED_BAD("trailer without a colon", "0\r\nXY\r\n\r\n");
    CHUNKED_BAD("space before a trailer's colon", "0\r\nX : y\r\n\r\n");
    CHUNKED_BAD("non-token trailer name", "0\r\nX(y): z\r\n\r\n");
    CHUNKED_BAD("CR CR at the end", "0\r\n\r\r");

    /* Extension bytes (from ';' up to CR) capped at HTTP_MAX_CHUNK_EXT. */
    n = (size_t)sprintf(s, "1;");
    memset(s + n, 'e', HTTP_MAX_CHUNK_EXT - 1);
    n += HTTP_MAX_CHUNK_EXT - 1;
    n += (size_t)sprintf(s + n, "\r\nx\r\n0\r\n\r\n");
    chunked_ok("extension at the cap", s, n, "x", 0);
    n = (size_t)sprintf(s, "1;");
    memset(s + n, 'e', HTTP_MAX_CHUNK_EXT);
    n += HTTP_MAX_CHUNK_EXT;
    n += (size_t)sprintf(s + n, "\r\nx\r\n0\r\n\r\n");
    chunked_bad("oversized extension", s, n);

    /* Trailer section capped at HTTP_MAX_TRAILER bytes (field lines and
     * their CRLFs). */
    n = (size_t)sprintf(s, "0\r\nX: ");
    memset(s + n, 't', HTTP_MAX_TRAILER - 5);
    n += HTTP_MAX_TRAILER - 5;
    n += (size_t)sprintf(s + n, "\r\n\r\n");
    decode_pieces(s, n, NULL, 0, &whole);
    ok(whole.ret == 0, "trailer at the cap accepted");
    n = (size_t)sprintf(s, "0\r\nX: ");
    memset(s + n, 't', HTTP_MAX_TRAILER - 4);
    n += HTTP_MAX_TRAILER - 4;
    n += (size_t)sprintf(s + n, "\r\n\r\n");
    chunked_bad("oversized trailer", s, n);
}

/* ---- helpers --------------------------------------------------------------- */

static void test_misc(void)
{
    const char *d1, *d2;
    time_t now;
    struct tm tm;
    char want[64];
    static const char layout[] = "aaa, 00 aaa 0000 00:00:00 GMT";
    int i, good = 1;

    ok(http_name_is((slice){"Content-LENGTH", 14}, "content-length") &&
       !http_name_is((slice){"Content-Len", 11}, "content-length") &&
       !http_name_is((slice){"Content-Lengths", 15}, "content-length") &&
       http_name_is((slice){"", 0}, ""), "http_name_is");
    ok(strcmp(http_reason(200), "OK") == 0 &&
       strcmp(http_reason(404), "Not Found") == 0 &&
       strcmp(http_reason(411), "Length Required") == 0 &&
       strcmp(http_reason(413), "Content Too Large") == 0 &&
       strcmp(http_reason(431), "Request Header Fields Too Large") == 0 &&
       strcmp(http_reason(429), "Too Many Requests") == 0 &&
       strcmp(http_reason(451), "Unavailable For Legal Reasons") == 0 &&
       strcmp(http_reason(505), "HTTP Version Not Supported") == 0,
       "http_reason: standard phrases");
    ok(strcmp(http_reason(299), "Unknown") == 0 &&
       strcmp(http_reason(-1), "Unknown") == 0, "http_reason: unknown code");

    d1 = http_date();
    now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    d2 = http_date();
    ok(strlen(d1) == 29 && d1 == d2, "http_date: 29 bytes, cached buffer");
    ok(strcmp(d2, want) == 0 || strcmp(d2, http_date()) == 0,
       "http_date: IMF-fixdate now (%s)", d2);
    for (i = 0; layout[i] != '\0'; i++)
        if (layout[i] == '0' ? !isdigit((unsigned char)d2[i])
            : layout[i] == 'a' ? !isalpha((unsigned char)d2[i])
            : d2[i] != layout[i])
            good = 0;
    ok(good && d2[29] == '\0',
       "http_date: layout");
}

/* All the elements http_list_next pops from s, joined by '|'. */
static const char *list_of(const char *s)
{
    static char buf[256];
    slice rest = { guarded(s, strlen(s)), strlen(s) }, e;
    size_t n = 0;

    while (http_list_next(&rest, &e)) {
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%.*s", n ? "|" : "", (int)e.n, e.p);
        if (!e.n)
            return "an empty element";
    }
    buf[n] = 0;
    return buf;
}

static int has_token(const char *s, const char *lower)
{
    return http_has_token(guarded(s, strlen(s)), strlen(s), lower);
}

static void test_lists(void)
{
    static const char *const rows[][2] = {
        { "", "" },                     { "a", "a" },
        { "a,b", "a|b" },               { " a , b ", "a|b" },
        { "\ta\t,\tb\t", "a|b" },      { "a,,b", "a|b" },
        { ",a", "a" },                  { "a,", "a" },
        { " , ,\t, ", "" },             { "a b, c\td", "a b|c\td" },
        { "1.2.3.4, 10.0.0.1,::1", "1.2.3.4|10.0.0.1|::1" },
    };
    char num[24], *d;

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        ok(!strcmp(list_of(rows[i][0]), rows[i][1]), "http_list_next: \"%s\" -> %s",
           rows[i][0], rows[i][1]);
    ok(has_token("close", "close") && has_token("Keep-Alive, Upgrade", "upgrade") &&
       has_token(" foo ,\tCLOSE\t", "close") && has_token(",,websocket,", "websocket"),
       "http_has_token: any element, any case, OWS and empty elements ignored");
    ok(!has_token("", "close") && !has_token("closed", "close") && !has_token("clos", "close") &&
       !has_token("keep-alive", "close") && !has_token("h2c websocket", "websocket") &&
       !has_token("foo close", "close"),
       "http_has_token: no partial match; spaces do not separate elements");
    d = http_utoa(num + sizeof num, 0);
    ok(d == num + sizeof num - 1 && *d == '0', "http_utoa: 0");
    d = http_utoa(num + sizeof num, UINT64_MAX);
    ok(!memcmp(d, "18446744073709551615", 20) && d == num + sizeof num - 20,
       "http_utoa: UINT64_MAX");
    int same = 1;
    for (uint64_t v = 1; v < UINT64_MAX / 3; v = v * 3 + v % 7) {
        char want[24];
        int wn = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
        d = http_utoa(num + sizeof num, v);
        same &= d == num + sizeof num - wn && !memcmp(d, want, (size_t)wn);
    }
    for (uint64_t v = 0; v < 100000; v++) {
        char want[24];
        int wn = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
        d = http_utoa(num + sizeof num, v);
        same &= d == num + sizeof num - wn && !memcmp(d, want, (size_t)wn);
    }
    ok(same, "http_utoa: as printf says, 0-99999 and a spread up to 2^63");
    ok(http_name_is((slice){"HOST", 4}, "host") && http_name_is((slice){"hoSt", 4}, "host") &&
       !http_name_is((slice){"hosT\0", 5}, "host") && !http_name_is((slice){"h0st", 4}, "host") &&
       !http_name_is((slice){"Hos", 3}, "host") && !http_name_is((slice){"x-a", 3}, "x_a"),
       "http_name_is: any case, the whole name, a byte only its own letter");
}

/* Response heads: framing from the status, the app's fields, the known
 * length and the request; nothing written past cap. */
static ssize_t head_of(resp_head *h, int code, const http_header *f, size_t nf, int64_t total,
                       const char *method, int minor, int can_keep, char *out, size_t cap)
{
    http_request rq;

    memset(&rq, 0, sizeof rq);
    rq.method = (slice){ method, strlen(method) };
    rq.minor = minor;
    memset(h, 0, sizeof *h);
    h->code = code;
    return http_resp_head(h, NULL, 0, f, nf, total, &rq, can_keep, out, cap);
}

#define F(k, v) { { k, sizeof(k) - 1 }, { v, sizeof(v) - 1 } }

static void test_resp_head(void)
{
    static char buf[2048];
    resp_head h;
    ssize_t n;
    const http_header ct[] = { F("content-type", "text/plain") };
    const http_header cl[] = { F("Content-Length", "5") };
    const http_header badcl[] = { F("content-length", "5x") };
    const http_header badcls[][1] = { { F("content-length", "")} , { F("content-length", " 5") },
                                      { F("content-length", "1000000000000000000") } };
    const http_header bigcl[] = { F("content-length", "999999999999999999") };
    const http_header own[] = { F("transfer-encoding", "gzip"), F("connection", "close"),
                                F("keep-alive", "timeout=5"), F("server", "app"),
                                F("date", "today") };

    n = head_of(&h, 200, ct, 1, 13, "GET", 1, 1, buf, sizeof buf);
    buf[n > 0 && (size_t)n < sizeof buf ? n : 0] = 0;
    ok(n > 0 && !strncmp(buf, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nserver: granc\r\n"
                         "date: ", 59) && strstr(buf, "\r\ncontent-length: 13\r\n\r\n")
       && !strstr(buf, "connection") && h.clen == 13 && h.keep && !h.chunked && !h.nobody,
       "response head: status line, fields, server, date, content-length of the known body");
    n = head_of(&h, 200, cl, 1, 13, "GET", 1, 1, buf, sizeof buf);
    buf[n > 0 ? n : 0] = 0;
    ok(n > 0 && h.clen == 5 && strstr(buf, "Content-Length: 5\r\n")
       && !strstr(buf, "content-length"), "response head: the app's Content-Length wins");
    ok(head_of(&h, 200, badcl, 1, -1, "GET", 1, 1, buf, sizeof buf) == HTTP_BAD,
       "response head: an invalid Content-Length is refused");
    for (size_t i = 0; i < 3; i++)
        ok(head_of(&h, 200, badcls[i], 1, -1, "GET", 1, 1, buf, sizeof buf) == HTTP_BAD,
           "response head: Content-Length \"%s\" is refused", badcls[i][0].value.p);
    ok(head_of(&h, 200, bigcl, 1, -1, "GET", 1, 1, buf, sizeof buf) > 0 &&
       h.clen == 999999999999999999LL, "response head: an 18-digit Content-Length");
    n = head_of(&h, 404, NULL, 0, 0, "GET", 1, 1, buf, sizeof buf);
    ok(n > 0 && !memcmp(buf, "HTTP/1.1 404 Not Found\r\n", 24), "response head: 404 status line");
    n = head_of(&h, 42, NULL, 0, 0, "GET", 1, 1, buf, sizeof buf);
    ok(n > 0 && !memcmp(buf, "HTTP/1.1 042 ", 13), "response head: status 42 as three digits");
    n = head_of(&h, 204, cl, 1, -1, "GET", 1, 1, buf, sizeof buf);
    buf[n > 0 ? n : 0] = 0;
    ok(n > 0 && !strstr(buf, "ength") && !strstr(buf, "chunked") && h.nobody && h.clen == -1,
       "response head: 204 drops Content-Length and has no body");
    n = head_of(&h, 200, own, 5, -1, "GET", 1, 1, buf, sizeof buf);
    buf[n > 0 ? n : 0] = 0;
    ok(n > 0 && !strstr(buf, "gzip") && !strstr(buf, "timeout") && strstr(buf, "server: app\r\n")
       && !strstr(buf, "granc") && strstr(buf, "date: today\r\n") && h.chunked && !h.keep
       && strstr(buf, "transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
       "response head: framing fields are the server's; Connection: close is honoured");
    const http_header up[] = { F("upgrade", "websocket"), F("connection", "keep-alive") };
    n = head_of(&h, 101, up, 2, -1, "GET", 1, 1, buf, sizeof buf);
    buf[n > 0 ? n : 0] = 0;
    ok(n > 0 && !memcmp(buf, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n", 52)
       && strstr(buf, "\r\nconnection: Upgrade\r\n\r\n") && !strstr(buf, "keep-alive")
       && !strstr(buf, "ength") && !h.keep && h.nobody,
       "response head: 101 says Connection: Upgrade, never keep-alive, and has no body");
    n = head_of(&h, 200, NULL, 0, -1, "GET", 0, 1, buf, sizeof buf);
    buf[n > 0 ? n : 0] = 0;
    ok(n > 0 && !h.chunked && !h.keep && strstr(buf, "connection: close\r\n\r\n"),
       "response head: HTTP/1.0 without a length ends the body with the close");
    n = head_of(&h, 200, NULL, 0, 7, "GET", 0, 1, buf, sizeof buf);
    buf[n > 0 ? n : 0] = 0;
    ok(n > 0 && h.keep && strstr(buf, "connection: keep-alive\r\n\r\n"),
       "response head: HTTP/1.0 keep-alive is said");
    n = head_of(&h, 200, NULL, 0, 7, "HEAD", 1, 0, buf, sizeof buf);
    buf[n > 0 ? n : 0] = 0;
    ok(n > 0 && h.nobody && h.clen == 7 && !h.keep && strstr(buf, "content-length: 7\r\n"),
       "response head: HEAD keeps the length, sends no body; can_keep 0 closes");
    n = head_of(&h, 200, ct, 1, 13, "GET", 1, 1, buf, sizeof buf);
    {
        ssize_t m = head_of(&h, 200, ct, 1, 13, "GET", 1, 1, guarded("", 0), 0);
        char *small = guarded(buf, 20);
        ssize_t k = head_of(&h, 200, ct, 1, 13, "GET", 1, 1, small, 20);
        ok(m == n && k == n && !memcmp(small, "HTTP/1.1 200 OK\r\ncon", 20),
           "response head: the length needed when cap is short, nothing written past it");
    }
}

/* http.c's byte class table, all 256 bytes against the RFC's words:
 * tchar (RFC 9110 5.6.2) in methods and field names, VCHAR in targets,
 * field-value bytes (5.5: HTAB, SP, VCHAR, obs-text) in values. */
static int parses(const char *fmt, int c)
{
    char s[128];
    int st = 0, n = snprintf(s, sizeof s, fmt, 'X');
    char *x = memchr(s, 'X', (size_t)n);

    *x = (char)c;               /* the byte may be a NUL: not via printf */
    return http_parse_request(guarded(s, (size_t)n), (size_t)n, 0, &req, &st) == n;
}

static void test_byte_classes(void)
{
    int tok = 1, val = 1, meth = 1, name = 1, target = 1, value = 1;

    for (int c = 0; c < 256; c++) {
        char b = (char)c;
        int tchar = (c < 128 && isalnum(c)) || (c && strchr("!#$%&'*+-.^_`|~", c));
        int vchar = c >= 0x21 && c <= 0x7e;
        int field = c == '\t' || (c >= 0x20 && c != 0x7f);
        tok &= http_is_token(&b, 1) == tchar;
        val &= http_value_ok(&b, 1) == field;
        meth &= parses("%cET / HTTP/1.1\r\nHost: h\r\n\r\n", c) == tchar;
        name &= parses("GET / HTTP/1.1\r\nHost: h\r\n%c: v\r\n\r\n", c) == tchar;
        target &= parses("GET /%c HTTP/1.1\r\nHost: h\r\n\r\n", c) == vchar;
        value &= parses("GET / HTTP/1.1\r\nHost: h\r\nA: a%cb\r\n\r\n", c) == field;
    }
    ok(tok && val, "byte classes: http_is_token and http_value_ok, all 256 bytes");
    ok(meth && name, "byte classes: tchar in methods and field names, all 256 bytes");
    ok(target, "byte classes: VCHAR in targets, all 256 bytes");
    ok(value, "byte classes: field-value bytes in values, all 256 bytes");
    ok(!http_is_token("", 0) && http_value_ok("", 0), "empty: no token, a fine value");
}

int main(void)
{
    tap_begin();
    test_accept();
    test_reject();
    test_limits();
    test_partial();
    test_chunked();
    test_misc();
    test_lists();
    test_resp_head();
    test_byte_classes();
    return tap_end();
}
