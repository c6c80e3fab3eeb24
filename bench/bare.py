"""The ceiling of `make bench`: a bare Quart JSON route served as authapp is, by `authapp serve`'s
supervisor with the repository's hypercorn.toml (the same workers, sockets, worker class and
access log), so what authapp adds on top is the difference.

Its access log is on, as authapp's: Hypercorn's own atoms and line, printed by a plain handler
on the root logger (hypercorn.toml hands Hypercorn's loggers to the root), one text line each.

    python bench/bare.py --config hypercorn.toml --bind 127.0.0.1:8001 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import sys

from hypercorn.config import Config
from quart import Quart

app = Quart(__name__)


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args()
    config = Config.from_toml(args.config)
    config.bind = [args.bind]
    config.workers = args.workers
    config.application_path = "bare:app"  # bench/ is on sys.path, and so on the workers'
    from authapp.infra.supervisor import supervise

    supervise(config)


# In each worker (which imports this module for `app`) as in the supervisor.
logging.basicConfig(stream=sys.stderr, format="%(message)s")

if __name__ == "__main__":
    main()
