"""RSGI's names, as Granian's granian.rsgi has them.

Inside a granc worker the classes are granc's own (granc registers them as
granian._granian, the module Granian's Rust extension has); outside one
(type checking, tests of an app) they are stand-ins with the same names,
so that `from granian.rsgi import ProtocolError` works everywhere.
"""
from enum import Enum

try:
    from ._granian import (
        RSGIHeaders as Headers,
        RSGIHTTPProtocol as HTTPProtocol,
        RSGIProtocolClosed as ProtocolClosed,
        RSGIProtocolError as ProtocolError,
        RSGIWebsocketProtocol as WebsocketProtocol,
    )
except ImportError:     # not in a granc worker
    class ProtocolError(RuntimeError):
        """RSGIProtocolError: the app used the protocol out of order."""

    class ProtocolClosed(RuntimeError):
        """RSGIProtocolClosed: the client or the transport has gone."""

    class Headers:
        """The request headers (granc's RSGIHeaders in a worker)."""

    class HTTPProtocol:
        """An HTTP request's protocol (granc's RSGIHTTPProtocol in a worker)."""

    class WebsocketProtocol:
        """A websocket's protocol (granc's RSGIWebsocketProtocol in a worker)."""


class Scope:
    proto: str
    http_version: str
    rsgi_version: str
    server: str
    client: str
    scheme: str
    method: str
    path: str
    query_string: str
    authority: "str | None"

    @property
    def headers(self) -> Headers: ...


class WebsocketMessageType(int, Enum):
    close = 0
    bytes = 1
    string = 2


class WebsocketMessage:
    kind: WebsocketMessageType
    data: "bytes | str | None"
