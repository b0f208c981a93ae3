"""`ltx-reconcile schema`: print the JSON Schema of spec files, for editors."""

from __future__ import annotations

import json

import click

from ltx_reconcile.cli import render
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.spec.schema import spec_json_schema


@click.command()
def schema() -> int:
    """Print the JSON Schema of spec files (for yaml-language-server and other editors).

    Example, then point specs at it with a first line
    `# yaml-language-server: $schema=../ltx-reconcile.schema.json`:

        ltx-reconcile schema > ltx-reconcile.schema.json
    """
    console = render.stdout_console()
    console.file.write(json.dumps(spec_json_schema(), indent=2) + "\n")
    return ExitCode.OK
