"""Documentation that must stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from ltx_reconcile.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent


def test_exit_code_table_matches_the_enum():
    """docs/exit-codes.md lists exactly the codes and names of ExitCode."""
    text = (ROOT / "docs" / "exit-codes.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", text, flags=re.MULTILINE)
    assert [(int(code), name) for code, name in rows] == [(c.value, c.name) for c in ExitCode]


def test_ci_runs_the_readme_test_command_verbatim():
    """.ci/run contains README's test command as one line, so the two cannot drift."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme, flags=re.DOTALL)
    test_command = next(c for c in commands if "pytest" in c)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_the_shipped_spec_schema_is_what_the_schema_command_prints(capsys):
    """docs/spec.schema.json, which the example specs reference, is regenerated, not edited."""
    from ltx_reconcile.cli.main import main

    assert main(["schema"]) == ExitCode.OK
    assert capsys.readouterr().out == (ROOT / "docs" / "spec.schema.json").read_text()
