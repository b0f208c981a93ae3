"""The CLI's entry points and its error boundary."""

from __future__ import annotations

import subprocess
import sys

from ltx_reconcile import __version__
from ltx_reconcile.cli.main import main
from ltx_reconcile.errors import ExitCode


def test_version_flag_prints_the_version_and_exits_zero(capsys):
    """`--version` names the program and its version."""
    assert main(["--version"]) == ExitCode.OK
    assert f"ltx-reconcile, version {__version__}" in capsys.readouterr().out


def test_unknown_flag_is_invalid_input_not_click_usage_code(capsys):
    """click's usage status 2 would read as "changes present"; it is remapped to 3."""
    assert main(["--no-such-flag"]) == ExitCode.INVALID_INPUT
    assert "Error: No such option '--no-such-flag'." in capsys.readouterr().err


def test_python_dash_m_runs_the_same_cli():
    """`python -m ltx_reconcile` is the console script."""
    done = subprocess.run(
        [sys.executable, "-m", "ltx_reconcile", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "Declarative, Terraform-style reconciler" in done.stdout
