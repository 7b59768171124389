/* ws.h -- RFC 6455 WebSocket protocol, no I/O and no Python (ws.c). */
#ifndef WS_H
#define WS_H

#include "granc.h"

#define WS_MAX_MESSAGE_DEFAULT (16u << 20)   /* bytes; over it: close 1009 */

enum ws_opcode { WS_CONT = 0x0, WS_TEXT = 0x1, WS_BINARY = 0x2,
                 WS_CLOSE = 0x8, WS_PING = 0x9, WS_PONG = 0xA };

/* One frame header, as parsed from a client. */
typedef struct ws_frame {
    unsigned fin : 1;
    unsigned masked : 1;
    int opcode;                      /* enum ws_opcode */
    uint64_t len;                    /* payload bytes */
    uint8_t mask[4];
} ws_frame;

/* Per-connection message state: fragmentation and UTF-8 of text. */
typedef struct ws_state {
    int msg_opcode;                  /* the current message's opcode, set by
                                        the parser for every data frame; the
                                        caller resets it to 0 after the
                                        final frame */
    uint64_t msg_len;                /* bytes of the open message so far */
    uint32_t utf8;                   /* incremental UTF-8 validator state */
} ws_state;

/* Parse a client frame header from buf[0,n).  Returns the header length
 * (> 0), HTTP_INCOMPLETE, or HTTP_BAD with *close_code set: 1002 for a
 * protocol error (RSV bits, reserved opcode, unmasked frame, fragmented or
 * long control frame, 64-bit length with the top bit), 1009 when a data
 * frame would make the message exceed max_message. Also applies the
 * sequence rules with s (continuation without a message, a new data frame
 * inside one) and updates s for data frames. */
int ws_frame_parse(ws_state *s, const uint8_t *buf, size_t n, uint64_t max_message,
                   ws_frame *f, int *close_code);
/* Unmask payload bytes in place; offset is the position of p in the
 * frame's payload (for payloads handled in pieces). */
void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);
/* Validate more text payload; fin: the message ends here.  Returns 0, or
 * -1 on invalid UTF-8 (close 1007).  Keeps its state in s->utf8. */
int ws_utf8(ws_state *s, const uint8_t *p, size_t n, int fin);
/* Write a server frame header (never masked) into out[10]; returns its length. */
size_t ws_frame_head(uint8_t out[10], int opcode, uint64_t len, int fin);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: out gets 28 chars + NUL.
 * Returns -1 if key is not the base64 of 16 bytes. */
int ws_accept_key(const char *key, size_t n, char out[29]);
/* Whether a close code received from a client is valid (RFC 6455 7.4). */
int ws_close_code_ok(int code);

/* TLS (tls.h): the master's certificates and key, one engine per connection. */
typedef struct tls_ctx tls_ctx;      /* certificates, key, anchors: per process */
typedef struct tls_conn tls_conn;    /* one connection's engine and buffers */

#endif
