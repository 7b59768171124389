"""granian.loops: the registry of event-loop builders, by name.

granc builds the loop itself in C (auto, asyncio, uvloop), so a builder a
caller registers cannot cross into it; serve() refuses a loop name that
was registered here.
"""


class Registry:
    __slots__ = ["_data"]

    def __init__(self):
        self._data = {}

    def __contains__(self, key):
        return key in self._data

    def keys(self):
        return self._data.keys()

    def register(self, key, packages=None):
        def wrap(builder):
            self._data[key] = builder
            return builder
        return wrap

    def get(self, key):
        try:
            return self._data[key]
        except KeyError:
            raise RuntimeError(f"'{key}' implementation not available.") from None


loops = Registry()
