"""Shell completion through click's own protocol: `_LTX_RECONCILE_COMPLETE=bash_source`.

Each command here is a real child process, as a shell would start it: the completion
script is printed by the program itself, and the script asks the program again, with
`COMP_WORDS`/`COMP_CWORD` in the environment, for the words that fit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT_DIR = Path(sys.executable).parent


def complete(words: str, cword: int, *, shell: str = "bash") -> list[str]:
    """What `ltx-reconcile` answers to a completion request for `words`."""
    env = {
        **os.environ,
        "_LTX_RECONCILE_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    run = subprocess.run(
        [sys.executable, "-m", "ltx_reconcile"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert run.stderr == ""
    return run.stdout.splitlines()


def source_script(shell: str) -> str:
    """The completion script the program prints for `shell`."""
    env = {**os.environ, "_LTX_RECONCILE_COMPLETE": f"{shell}_source"}
    run = subprocess.run(
        [sys.executable, "-m", "ltx_reconcile"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return run.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_program_prints_a_completion_script_for_each_shell(shell):
    """The script names the program and the variable that switches completion on."""
    script = source_script(shell)
    assert "_LTX_RECONCILE_COMPLETE" in script
    assert "ltx-reconcile" in script


def test_a_partial_subcommand_name_completes_to_the_subcommand():
    """`ltx-reconcile pl<TAB>` offers `plan`; `ltx-reconcile <TAB>` offers every command."""
    assert complete("ltx-reconcile pl", 1) == ["plain,plan"]
    offered = complete("ltx-reconcile ", 1)
    assert {"plain,plan", "plain,apply", "plain,validate"} <= set(offered)


def test_an_option_value_completes_from_its_choices():
    """`plan --format <TAB>` offers the three formats."""
    assert complete("ltx-reconcile plan --format ", 3) == [
        "plain,human",
        "plain,json",
        "plain,markdown",
    ]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_a_subcommand_through_the_sourced_script():
    """The way a user's shell does it: source the script, then run its completion function."""
    assert (SCRIPT_DIR / "ltx-reconcile").exists(), "the package is not installed (pip -e)"
    probe = (
        'eval "$(_LTX_RECONCILE_COMPLETE=bash_source ltx-reconcile)"\n'
        "COMP_WORDS=(ltx-reconcile valid) COMP_CWORD=1\n"
        "_ltx_reconcile_completion ltx-reconcile\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{SCRIPT_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert run.stdout == "validate\n"
