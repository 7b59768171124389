/* asgi_ws.c -- ASGI websockets over ws.c.  It shares the Transport, its
 * output queue and tr_flush() with asgi.c (asgi_int.h).
 *
 * A websocket request is an ASGI request whose receive() and send() speak
 * the websocket.* messages.  Until the app accepts, the connection is an
 * HTTP request that can still be denied (403, or the app's own
 * websocket.http.response).  After the 101 the request's body is the raw
 * stream: frames are read from it as the app asks for messages; control
 * frames are answered here (ping → pong, close → close).  A complete
 * message waits in t->pending until the app takes it: reading stops
 * meanwhile, so a client cannot make granc hold more than one message
 * (at most --ws-max-message-size bytes).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "aio.h"
#include "asgi_int.h"
#include "py.h"
#include "http.h"
#include "ws.h"

static PyObject *t_ws_connect, *t_ws_accept, *t_ws_receive, *t_ws_send, *t_ws_close,
                *t_ws_disconnect, *t_ws_rstart, *t_ws_rbody, *k_text, *k_bytes, *k_code,
                *k_reason, *k_subprotocol, *k_subprotocols, *s_websocket, *s_ws_scheme,
                *s_wss_scheme;

int asgi_ws_intern(void)
{
    INTERN(t_ws_connect, "websocket.connect"); INTERN(t_ws_accept, "websocket.accept");
    INTERN(t_ws_receive, "websocket.receive"); INTERN(t_ws_send, "websocket.send");
    INTERN(t_ws_close, "websocket.close"); INTERN(t_ws_disconnect, "websocket.disconnect");
    INTERN(t_ws_rstart, "websocket.http.response.start");
    INTERN(t_ws_rbody, "websocket.http.response.body");
    INTERN(k_text, "text"); INTERN(k_bytes, "bytes"); INTERN(k_code, "code");
    INTERN(k_reason, "reason"); INTERN(k_subprotocol, "subprotocol");
    INTERN(k_subprotocols, "subprotocols"); INTERN(s_websocket, "websocket");
    INTERN(s_ws_scheme, "ws"); INTERN(s_wss_scheme, "wss");
    return 0;
}

/* An upgrade to websocket that this worker serves (--ws, ASGI). */
int asgi_ws_wanted(request *r)
{
    const http_header *up = r->head->upgrade ? http_find_header(r->head, "upgrade", 0) : NULL;
    return asgi_cfg->ws && up && http_has_token(up->value.p, up->value.n, "websocket");
}

/* The handshake's own checks; on failure *why says what was wrong. */
int asgi_ws_handshake_ok(request *r, char accept[29], const char **why)
{
    const http_request *rq = r->head;
    const http_header *v = http_find_header(rq, "sec-websocket-version", 0);
    const http_header *k = http_find_header(rq, "sec-websocket-key", 0);
    if (rq->method.n != 3 || memcmp(rq->method.p, "GET", 3)) *why = "websocket: method must be GET";
    else if (rq->minor != 1) *why = "websocket: HTTP/1.1 required";
    else if (!v || v->value.n != 2 || memcmp(v->value.p, "13", 2))
        *why = "websocket: unsupported Sec-WebSocket-Version (13 only)";
    else if (!k || ws_accept_key(k->value.p, k->value.n, accept) < 0)
        *why = "websocket: missing or invalid Sec-WebSocket-Key";
    else return 1;
    return 0;
}

PyObject *asgi_ws_scope(request *r)
{
    PyObject *scope = asgi_scope(r);
    if (!scope) return NULL;
    PyObject *subs = PyList_New(0);
    const http_header *p = http_find_header(r->head, "sec-websocket-protocol", 0);
    for (slice rest = p ? p->value : (slice){ "", 0 }, e; subs && http_list_next(&rest, &e);) {
        PyObject *s = PyUnicode_DecodeLatin1(e.p, (Py_ssize_t)e.n, NULL);
        if (!s || PyList_Append(subs, s) < 0) Py_CLEAR(subs);
        Py_XDECREF(s);
    }
    Py_INCREF(s_websocket);
    PyObject *scheme = r->secure ? s_wss_scheme : s_ws_scheme;
    Py_INCREF(scheme);
    if (!subs || asgi_set(scope, k_type, s_websocket) || asgi_set(scope, k_scheme, scheme) ||
        PyDict_DelItem(scope, k_method) < 0 || asgi_set(scope, k_subprotocols, subs)) {
        Py_DECREF(scope);
        return NULL;
    }
    return scope;
}

/* A frame out: the header copied, the payload by reference or copied. */
int asgi_ws_out(Transport *t, int opcode, const char *p, size_t n, PyObject *owner)
{
    uint8_t head[10];
    size_t hn = ws_frame_head(head, opcode, n, 1);
    return tr_push(t, (const char *)head, hn, NULL, 1) < 0 ||
           tr_push(t, p, n, owner, !owner) < 0 ? -1 : 0;
}

/* Send a close frame (once) and say that the closing has begun. */
void asgi_ws_close(Transport *t, int code, const char *reason, size_t rn)
{
    if (t->wsstate >= WSS_CLOSING || t->gone) { t->wsstate = WSS_CLOSED; return; }
    char body[125];
    size_t n = 0;
    if (code != 1005) {
        if (rn > sizeof(body) - 2) rn = sizeof(body) - 2;
        body[0] = (char)(code >> 8);
        body[1] = (char)(code & 0xff);
        memcpy(body + 2, reason, rn);
        n = 2 + rn;
    }
    if (asgi_ws_out(t, WS_CLOSE, body, n, NULL) < 0) { PyErr_Clear(); t->gone = 1; }
    t->wsstate = WSS_CLOSING;
}

/* The connection ends for the app: remember the code it will be told. */
static void ws_fail(Transport *t, int code)
{
    if (!t->ws_code) t->ws_code = code;
    asgi_ws_close(t, code, "", 0);
    t->wsstate = WSS_CLOSED;
}

PyObject *asgi_ws_disconnect_msg(Transport *t)
{
    PyObject *m = Py_BuildValue("{sOsi}", "type", t_ws_disconnect, "code",
                                t->ws_code ? t->ws_code : 1006);
    if (m && t->ws_reason) PyDict_SetItem(m, k_reason, t->ws_reason);
    return m;
}

/* A control frame, its payload p[0,n) unmasked. */
static void ws_control(Transport *t, uint8_t *p, size_t n)
{
    if (t->fr.opcode == WS_PING && t->wsstate == WSS_OPEN) {
        if (asgi_ws_out(t, WS_PONG, (const char *)p, n, NULL) < 0) { PyErr_Clear(); t->gone = 1; }
    } else if (t->fr.opcode == WS_CLOSE) {
        int code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
        ws_state u = {0};
        if (n == 1 || (n >= 2 && !ws_close_code_ok(code)) ||
            (n > 2 && ws_utf8(&u, p + 2, n - 2, 1) < 0)) {
            ws_fail(t, 1002);
            return;
        }
        if (!t->ws_code) t->ws_code = code;
        if (n > 2 && !t->ws_reason)
            t->ws_reason = PyUnicode_DecodeUTF8((const char *)p + 2, (Py_ssize_t)n - 2, NULL);
        PyErr_Clear();
        asgi_ws_close(t, code == 1005 ? 1005 : code, "", 0);   /* echo the code */
        t->wsstate = WSS_CLOSED;
    }
}

/* Read and decode frames until a message is complete (t->pending), the
 * socket has no more, or the connection closes.  want is how many bytes
 * the next step needs: a frame head or a control frame comes whole. */
void asgi_ws_pump(Transport *t)
{
    request *r = t->req;
    size_t head_want = 1;               /* what the frame parser asked for */
    while (r && !t->pending && t->wsstate != WSS_CLOSED && !t->gone) {
        size_t want = !t->in_frame ? head_want
                    : t->fr.opcode >= WS_CLOSE ? (size_t)t->fr.len : t->fr_done < t->fr.len;
        const char *in = "";
        size_t n = 0;
        if (want) {                     /* (an empty frame needs no byte) */
            ssize_t avail = r->ops->body(r, want, 0, &in);
            if (avail == HTTP_INCOMPLETE) break;
            if (avail < 0 && errno == EMSGSIZE) { ws_fail(t, 1009); break; }
            if (avail <= 0) {
                t->gone = 1;            /* EOF or error without a close frame */
                t->wsstate = WSS_CLOSED;
                break;
            }
            n = (size_t)avail;
        }
        head_want = 1;
        if (!t->in_frame) {
            int code = 1002;
            int k = ws_frame_parse(&t->wss, (const uint8_t *)in, n,
                                   asgi_cfg->ws_max_message_size, &t->fr, &code);
            if (k == HTTP_BAD) { ws_fail(t, code); break; }
            if (k == HTTP_INCOMPLETE) { head_want = n + 1; continue; }
            r->ops->take(r, (size_t)k);
            t->in_frame = 1;
            t->fr_done = 0;
        } else if (t->fr.opcode >= WS_CLOSE) {
            uint8_t ctl[125];           /* ws_frame_parse: at most 125 */
            memcpy(ctl, in, (size_t)t->fr.len);
            ws_unmask(ctl, (size_t)t->fr.len, t->fr.mask, 0);
            r->ops->take(r, (size_t)t->fr.len);
            t->in_frame = 0;
            ws_control(t, ctl, (size_t)t->fr.len);
        } else {
            size_t k = n;
            if (k > t->fr.len - t->fr_done) k = (size_t)(t->fr.len - t->fr_done);
            int text = t->wss.msg_opcode == WS_TEXT || t->fr.opcode == WS_TEXT;
            if (t->msg_len + k > t->msg_cap) {
                size_t cap = t->msg_cap ? t->msg_cap : 4096;
                while (cap < t->msg_len + k) cap *= 2;
                char *m = realloc(t->msg, cap);
                if (!m) { ws_fail(t, 1011); break; }
                t->msg = m;
                t->msg_cap = cap;
            }
            const uint8_t *p = (const uint8_t *)"";   /* an empty message has no t->msg */
            if (k) {
                uint8_t *m = (uint8_t *)t->msg + t->msg_len;
                memcpy(m, in, k);
                ws_unmask(m, k, t->fr.mask, t->fr_done);
                r->ops->take(r, k);
                p = m;
            }
            t->msg_len += k;
            t->fr_done += k;
            int end = t->fr_done == t->fr.len;
            if (text && ws_utf8(&t->wss, p, k, end && t->fr.fin) < 0) { ws_fail(t, 1007); break; }
            if (!end) continue;
            t->in_frame = 0;
            if (!t->fr.fin) continue;
            /* t->msg is NULL until a message has bytes: "" keeps an empty
             * message b"" (ASGI), where y# would make it None. */
            const char *m = t->msg ? t->msg : "";
            t->pending = t->ws_msg ? t->ws_msg(text, m, t->msg_len)
                : text
                ? Py_BuildValue("{sOsN}", "type", t_ws_receive, "text",
                                PyUnicode_DecodeUTF8(m, (Py_ssize_t)t->msg_len, NULL))
                : Py_BuildValue("{sOsy#}", "type", t_ws_receive, "bytes", m,
                                (Py_ssize_t)t->msg_len);
            if (!t->pending) { PyErr_Clear(); ws_fail(t, 1011); }
            t->msg_len = 0;
            if (t->msg_cap > 65536) { free(t->msg); t->msg = NULL; t->msg_cap = 0; }
            t->wss.msg_opcode = 0;
            t->wss.msg_len = 0;
        }
    }
}

static PyObject *ws_next(Transport *t)
{
    if (!t->connect_sent) {
        t->connect_sent = 1;
        return Py_BuildValue("{sO}", "type", t_ws_connect);
    }
    if (!t->pending && t->req && t->wsstate != WSS_CONNECTING) asgi_ws_pump(t);
    if (t->pending) {
        PyObject *m = t->pending;
        t->pending = NULL;
        return m;
    }
    if (!t->req || t->gone || t->wsstate == WSS_CLOSED) return asgi_ws_disconnect_msg(t);
    if (t->wsstate == WSS_CONNECTING && t->req->ops->gone(t->req)) {
        t->gone = 1;
        return asgi_ws_disconnect_msg(t);
    }
    return NULL;
}

PyObject *asgi_ws_receive(Transport *t, PyObject *unused)
{
    (void)unused;
    PyObject *m = ws_next(t);
    if (t->req) tr_flush(t);               /* pongs and close frames ws_pump queued */
    if (m || PyErr_Occurred()) return aio_ready(m);
    PyObject *f = tr_new_waiter(t);
    tr_watch(t);
    return f;
}

/* The handshake's own headers, which the app cannot set. */
static int ws_own_header(slice name)
{
    return http_name_is(name, "upgrade") || http_name_is(name, "connection") ||
           http_name_is(name, "sec-websocket-accept") ||
           http_name_is(name, "sec-websocket-protocol");
}

/* websocket.accept: the 101 with the accept key and the app's headers.
 * Everything is checked before anything is queued, so a refused accept
 * leaves the handshake unanswered, as a refused http.response.start
 * leaves the response. */
static int ws_accept(Transport *t, PyObject *msg)
{
    request *r = t->req;
    char key[29];
    const char *why = NULL, *s = NULL;
    Py_ssize_t sn = 0;
    if (!asgi_ws_handshake_ok(r, key, &why)) {
        PyErr_SetString(PyExc_RuntimeError, why);
        return -1;
    }
    PyObject *sub = PyDict_GetItemWithError(msg, k_subprotocol);
    if (sub && sub != Py_None) {
        if (py_text(sub, &s, &sn) < 0 || !http_is_token(s, (size_t)sn) || sn > 512) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "invalid subprotocol");
            return -1;
        }
        /* only one the client offered (RFC 6455 4.2.2): any other would
         * make the client fail the handshake */
        const http_header *offer = http_find_header(r->head, "sec-websocket-protocol", 0);
        char low[513];
        for (Py_ssize_t i = 0; i < sn; i++)
            low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
        low[sn] = 0;
        if (!offer || !http_has_token(offer->value.p, offer->value.n, low))
            s = NULL;
    }
    if (PyErr_Occurred()) return -1;
    PyObject *hd = PyDict_GetItemWithError(msg, k_headers);
    py_fields pf;
    if ((!hd && PyErr_Occurred()) || py_fields_get(&pf, hd, 3) < 0) return -1;
    /* the handshake's own fields, then the app's less those (Granian drops
     * them all; granc sends the app's) */
    size_t nf = 0;
    pf.f[nf++] = (http_header){ { "upgrade", 7 }, { "websocket", 9 } };
    pf.f[nf++] = (http_header){ { "sec-websocket-accept", 20 }, { key, 28 } };
    if (s) pf.f[nf++] = (http_header){ { "sec-websocket-protocol", 22 }, { s, (size_t)sn } };
    for (size_t i = 3; i < pf.n; i++)
        if (!ws_own_header(pf.f[i].name)) pf.f[nf++] = pf.f[i];
    struct iovec v;
    r->res.code = 101;
    int rc = py_head(r, NULL, 0, pf.f, nf, -1, &v) < 0 ||
             tr_push(t, v.iov_base, v.iov_len, NULL, 1) < 0 ? -1 : 0;
    py_fields_free(&pf);
    if (rc < 0) return -1;
    t->wsstate = WSS_OPEN;
    t->resp = RESP_HEAD;
    return 0;
}

PyObject *asgi_ws_send(Transport *t, PyObject *msg)
{
    PyObject *type = tr_send_type(t, msg);
    if (!type) return NULL;
    int rc = 0;
    if (asgi_is_type(type, t_ws_accept)) {
        if (t->wsstate != WSS_CONNECTING || t->resp >= RESP_STARTED)
            return asgi_flow_error("Websocket already accepted or denied");
        rc = ws_accept(t, msg);
    } else if (asgi_is_type(type, t_ws_send)) {
        if (t->wsstate == WSS_CONNECTING) return asgi_flow_error("Websocket not accepted");
        if (t->wsstate != WSS_OPEN) {
            PyErr_SetString(PyExc_OSError, "websocket closed");
            return NULL;
        }
        PyObject *b = PyDict_GetItemWithError(msg, k_bytes);
        PyObject *s = PyDict_GetItemWithError(msg, k_text);
        if (b && b != Py_None) {
            Py_buffer v;
            if (PyObject_GetBuffer(b, &v, PyBUF_SIMPLE) < 0) return NULL;
            rc = asgi_ws_out(t, WS_BINARY, v.buf, (size_t)v.len, PyBytes_CheckExact(b) ? b : NULL);
            PyBuffer_Release(&v);
        } else if (s && s != Py_None) {
            Py_ssize_t n;
            const char *p = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &n) : NULL;
            if (!p) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "text must be str");
                return NULL;
            }
            rc = asgi_ws_out(t, WS_TEXT, p, (size_t)n, s);   /* the UTF-8 lives in s */
        } else {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "websocket.send needs bytes or text");
            return NULL;
        }
    } else if (asgi_is_type(type, t_ws_close)) {
        PyObject *code = PyDict_GetItemWithError(msg, k_code);
        PyObject *reason = PyDict_GetItemWithError(msg, k_reason);
        long cd = code && code != Py_None ? PyLong_AsLong(code) : 1000;
        if (cd == -1 && PyErr_Occurred()) return NULL;
        if (t->wsstate == WSS_CONNECTING) {         /* closed before accept: 403 */
            rc = tr_answer(t, 403, NULL, "", 0);
            t->wsstate = WSS_CLOSED;
        } else {
            Py_ssize_t rn = 0;
            const char *r = reason && reason != Py_None && PyUnicode_Check(reason)
                            ? PyUnicode_AsUTF8AndSize(reason, &rn) : "";
            if (!r) return NULL;
            if (!t->ws_code) t->ws_code = (int)cd;
            asgi_ws_close(t, (int)cd, r, (size_t)rn);
        }
    } else if (asgi_is_type(type, t_ws_rstart)) {
        if (t->wsstate != WSS_CONNECTING || t->resp >= RESP_STARTED)
            return asgi_flow_error("Response already started");
        if (tr_take_start(t, msg) < 0) return NULL;
    } else if (asgi_is_type(type, t_ws_rbody)) {
        if (t->resp < RESP_STARTED || t->wsstate != WSS_CONNECTING) return asgi_flow_error("Response not started");
        if (t->resp == RESP_DONE) return asgi_flow_error("Response already finished");
        PyObject *body = PyDict_GetItemWithError(msg, k_body);
        int more = asgi_get_bool(msg, k_more_body);
        Py_buffer view = { .buf = (void *)"", .len = 0 };
        if (more < 0 || (body && PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0)) return NULL;
        rc = tr_out_body(t, view.buf, (size_t)view.len, NULL, more ? -1 : t->req->sent + view.len);
        if (body) PyBuffer_Release(&view);
        if (rc == 0 && !more) rc = tr_out_end(t, NULL);
    } else {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "Unsupported ASGI message");
        return NULL;
    }
    return tr_send_result(t, rc);
}

/* The socket is readable while the app owns a websocket. */
void asgi_ws_event(Transport *t)
{
    if (t->wsstate == WSS_CONNECTING) {
        if (t->req->ops->gone(t->req)) t->gone = 1;
        else t->noread = 1;
    } else {
        asgi_ws_pump(t);
    }
    if ((t->pending || t->gone || t->wsstate == WSS_CLOSED) && tr_waiters(t)) {
        int all = !t->pending;          /* the disconnect is for every waiter */
        PyObject *m = ws_next(t);
        if (m) tr_wake(t, m, all);
        else PyErr_Clear();
    }
    if (t->req) tr_flush(t);
}

/* The app's task ended: deny (403) if it never accepted, close if it left
 * the socket open (1000, or 1011 after an exception). */
void asgi_ws_task_done(Transport *t, int raised)
{
    if (!t->req) return;
    if (t->wsstate == WSS_CONNECTING && t->resp < RESP_HEAD && !t->gone) {
        if (tr_answer(t, 403, NULL, "", 0) < 0) { PyErr_Clear(); t->gone = 1; }
    } else if (t->wsstate == WSS_CONNECTING && t->resp != RESP_DONE) {
        t->gone = 1;                    /* a denial body left unfinished */
    } else if (t->wsstate == WSS_OPEN) {
        asgi_ws_close(t, raised ? 1011 : 1000, "", 0);
    }
}

/* The worker is stopping: open websockets are told "going away" (1001);
 * the app sees the disconnect once the client answers the close. */
void asgi_stop(request *r)
{
    Transport *t = r->app;
    if (!t || !t->ws || t->wsstate != WSS_OPEN) return;
    Py_INCREF(t);
    if (!t->ws_code) t->ws_code = 1001;
    asgi_ws_close(t, 1001, "", 0);
    tr_flush(t);
    Py_DECREF(t);
}
