"""WebSocket message rate: now the "ws" case of bench.py, kept as a name.

    bench/ws_bench.py [--seconds S] [--rounds N] [--conns C] [SERVER...]

is `bench/bench.py --case ws ...`: granc against uvicorn (websockets),
hypercorn and daphne; see bench.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import main  # noqa: E402

if __name__ == "__main__":
    main(["--case", "ws"] + sys.argv[1:])
