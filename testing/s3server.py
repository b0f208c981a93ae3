"""moto's S3 server in a process of its own, on loopback: the benchmarks' shared bucket store.

    python -m testing.s3server        # prints "S3 serving http://127.0.0.1:PORT", then serves

It serves until SIGTERM or SIGINT. The tests run the same server in a thread of pytest's
process (tests/s3/server.py); a benchmark wants it apart, so that its CPU time can be read
from /proc and its GIL does not compete with the process that measures. moto accepts any
credentials and keeps every object in memory, so a server is good for one benchmark run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Final

__all__ = ["CREDENTIALS", "READY_PREFIX", "child_env", "main"]

READY_PREFIX: Final = "S3 serving "
"""The line the server prints, followed by its endpoint URL, once it accepts connections."""

CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "ltx-bench-key-id",
    "AWS_SECRET_ACCESS_KEY": "ltx-bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""What moto accepts (anything): throwaway values, never real ones."""


def child_env(endpoint: str, credentials: Mapping[str, str] = CREDENTIALS) -> dict[str, str]:
    """The variables a CLI child needs to use the server at `endpoint`: `credentials`, and
    no ~/.aws files."""
    return {
        **credentials,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "LTX_STORE_ENDPOINT": endpoint,
    }


def main() -> int:
    """Start the server on a free loopback port, print its endpoint, serve until signalled."""
    # Imported here: the tests import child_env, and skip (not fail) where moto is missing.
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO: a line per object, on the benchmark's clock.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server's threads start, so they inherit the mask and only
    # sigwait() below receives the signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        sys.stdout.write(f"{READY_PREFIX}http://{host}:{port}\n")
        sys.stdout.flush()
        signal.sigwait(stop_signals)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
