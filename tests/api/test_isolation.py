"""The client stands apart from the emulator: two independent readings of the contract."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_client_loads_no_emulator_module():
    """Nothing the client imports, directly or not, comes from `ltx_reconcile.emulator`.

    (click and rich are not checked here: httpx itself imports them for its own CLI when
    they are installed; `tests/test_architecture.py` checks our own import statements.)
    """
    probe = (
        "import sys, ltx_reconcile.api;"
        "print(sorted(m for m in sys.modules if m.startswith('ltx_reconcile.emulator')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
