"""An apply that outlasts its lease renews it, so no other host may take the state over."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from pydantic import SecretStr

from ltx_reconcile.apply_result import ApplyOptions
from ltx_reconcile.emulator.server import serve_emulator
from ltx_reconcile.settings import Settings
from ltx_reconcile.workspace import Workspace, WorkspacePaths
from testing.tree import gen
from testing.workspace import CANARY_TOKEN, crash_test_config

SLOW_IMAGES = {
    "specs": {
        "a.yaml": """
            images:
              cat: {prompt: a cat on a windowsill, seed: 1}
              dog: {prompt: a dog in the snow, seed: 2}
        """
    }
}


def _watch_lease(state: Path, stop: threading.Event, seen: list[tuple[float, float, float]]):
    """Read the lease row from another connection every 20 ms: (now, heartbeat, expiry)."""
    while not stop.is_set():
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT heartbeat_at, expires_at FROM lease WHERE id = 1").fetchone()
        if row is not None:
            seen.append((time.time(), *row))
        stop.wait(0.02)


def test_an_apply_longer_than_its_lease_keeps_renewing_it(tmp_path: Path):
    """Jobs of about a second under a 0.3 s lease: the lease is renewed while the apply
    runs, and another process reading the state never finds it expired meanwhile."""
    gen(tmp_path, SLOW_IMAGES)
    config = crash_test_config(latency_median_s={"flux": 60.0}, latency_sigma=0.0)
    with serve_emulator(config) as emulator:
        settings = Settings(
            api_url=emulator.base_url, token=SecretStr(CANARY_TOKEN), poll_interval_s=0.02
        )
        workspace = Workspace(WorkspacePaths.under(tmp_path), settings)
        stop = threading.Event()
        seen: list[tuple[float, float, float]] = []
        with workspace.session(lock_timeout_s=0, operation="apply", lease_ttl_s=0.3) as session:
            watcher = threading.Thread(
                target=_watch_lease, args=(workspace.paths.state, stop, seen)
            )
            watcher.start()
            try:
                summary = session.apply(session.plan(), ApplyOptions(), handle_signals=False)
            finally:
                stop.set()
                watcher.join()
    assert sorted(summary.generated) == ["cat", "dog"]
    renewals = sorted({heartbeat for _, heartbeat, _ in seen})
    assert len(renewals) >= 3
    # From the apply's first renewal on (before it, the plan ran under the first lease).
    applying = [(now, expires) for now, heartbeat, expires in seen if heartbeat >= renewals[1]]
    assert [now for now, expires in applying if now >= expires] == []
