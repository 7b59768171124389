from .common import AbstractServer


class MTServer(AbstractServer):
    """Granian's threaded server (free-threaded Python).  granc runs worker
    processes either way; the keywords are the same."""
