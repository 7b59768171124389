"""Granian's HTTP settings objects.  The shim reads them by attribute, as
Granian's Rust side does, so any object with these fields works."""
from dataclasses import dataclass
from typing import Optional


@dataclass
class HTTP1Settings:
    header_read_timeout: int = 30_000               # ms
    keep_alive: bool = True
    max_buffer_size: int = 8192 + 4096 * 100        # bytes of a request head
    pipeline_flush: bool = False


@dataclass
class HTTP2Settings:
    adaptive_window: bool = False
    initial_connection_window_size: int = 1024 * 1024
    initial_stream_window_size: int = 1024 * 1024
    keep_alive_interval: Optional[int] = None       # ms; None: no pings
    keep_alive_timeout: int = 20                    # s
    max_concurrent_streams: int = 200
    max_frame_size: int = 1024 * 16
    max_headers_size: int = 16 * 1024 * 1024
    max_send_buffer_size: int = 1024 * 400
