"""The `ltx-reconcile` command group and its single error boundary.

Every command below returns an `ExitCode`; every anticipated failure is a `ReconcileError`
raised below this layer and rendered here, once. Anything else is a bug: its traceback goes
to a crash log (never to the terminal, where it could carry more than we mean to show) and
the process exits 1, naming the log.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

import click

from ltx_reconcile import __version__
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.apply import apply
from ltx_reconcile.cli.emulator import emulator
from ltx_reconcile.cli.force_unlock import force_unlock
from ltx_reconcile.cli.plan import plan
from ltx_reconcile.cli.schema import schema
from ltx_reconcile.cli.validate import validate
from ltx_reconcile.errors import ExitCode, ReconcileError
from ltx_reconcile.settings import Settings

__all__ = ["cli", "main", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ltx-reconcile")
@click.option(
    "-C",
    "directory",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Run as if started in DIR.",
)
@click.pass_context
def cli(ctx: click.Context, directory: Path | None) -> None:
    """Declarative, Terraform-style reconciler for AI-generated images.

    Describe images in YAML under specs/, review `ltx-reconcile plan`, then
    `ltx-reconcile apply` generates only what is missing or changed.
    """
    root = (directory or Path.cwd()).resolve()
    ctx.obj = CliApp(settings=Settings.from_env(os.environ), root=root)


for _command in (validate, plan, apply, force_unlock, schema, emulator):
    cli.add_command(_command)


def _write_crash_log(exc: BaseException) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    fd, name = tempfile.mkstemp(prefix=f"ltx-reconcile-crash-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as log:
        log.write(f"ltx-reconcile {__version__} on Python {sys.version}\n")
        log.write(f"argv: {sys.argv[1:]}\n\n")
        log.write("".join(traceback.format_exception(exc)))
    return Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` and return the exit status instead of exiting."""
    from ltx_reconcile.cli import render

    try:
        result = cli.main(args=argv, prog_name="ltx-reconcile", standalone_mode=False)
    except ReconcileError as err:
        render.error(render.stderr_console(), err)
        return int(err.exit_code)
    except click.exceptions.Exit as exit_:  # --help, --version
        return int(exit_.exit_code)
    except click.ClickException as err:  # bad flags, unreadable paths
        err.show()
        return int(ExitCode.INVALID_INPUT)
    except (click.Abort, KeyboardInterrupt):
        render.stderr_console().print("Interrupted.")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one boundary for bugs, by design
        log = _write_crash_log(exc)
        render.stderr_console().print(
            f"Internal error: {type(exc).__name__}. This is a bug in ltx-reconcile; "
            f"the details are in {log}"
        )
        return int(ExitCode.ERROR)
    return int(result or 0)


def run() -> None:
    """Entry point of the `ltx-reconcile` script and `python -m ltx_reconcile`."""
    sys.exit(main())
