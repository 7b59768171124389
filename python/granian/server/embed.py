"""Granian's embedded server runs inside the caller's asyncio loop, which a
separate granc process cannot do."""
raise ImportError(
    "granian.server.embed is not available with granc: the embedded server runs "
    "inside the caller's event loop, and granc is a separate process; use "
    "granian.Granian(...).serve() or the granc command instead")
