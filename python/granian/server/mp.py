from .common import AbstractServer


class MPServer(AbstractServer):
    """Granian's multi-process server: granc's workers are processes too."""
