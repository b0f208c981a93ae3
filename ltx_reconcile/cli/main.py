"""The `ltx-reconcile` command group and its single error boundary.

Every command below returns an `ExitCode`; every anticipated failure is a `ReconcileError`
raised below this layer and rendered here, once. Anything else is a bug: its traceback goes
to a crash log (never to the terminal, where it could carry more than we mean to show) and
the process exits 1, naming the log.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import click

from ltx_reconcile import __version__
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.errors import ExitCode, ReconcileError
from ltx_reconcile.settings import Settings

__all__ = ["cli", "main", "run"]

_COMMANDS: Final[Mapping[str, str]] = {
    "validate": "ltx_reconcile.cli.validate:validate",
    "plan": "ltx_reconcile.cli.plan:plan",
    "apply": "ltx_reconcile.cli.apply:apply",
    "force-unlock": "ltx_reconcile.cli.force_unlock:force_unlock",
    "schema": "ltx_reconcile.cli.schema:schema",
    "emulator": "ltx_reconcile.cli.emulator:emulator",
    "gallery": "ltx_reconcile.cli.gallery:gallery",
    "import": "ltx_reconcile.cli.import_cmd:import_",
    "state": "ltx_reconcile.cli.state:state",
    "show": "ltx_reconcile.cli.show:show",
    "verify": "ltx_reconcile.cli.verify:verify",
    "gc": "ltx_reconcile.cli.gc:gc",
}
"""Each command's name and where it lives (module:attribute), imported only when used."""


class _LazyGroup(click.Group):
    """A group that imports a command's module only when that command is looked up.

    `plan` must answer in well under a second, interpreter start included (issue 4);
    importing every command up front pulled in the HTTP client, pydantic, rich.progress and
    the emulator's configuration, about half of a warm plan's start-up. `--help` still
    lists every command: listing looks each one up.
    """

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is not None and cmd_name not in self.commands:
            module_name, attribute = target.split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command) or command.name != cmd_name:
                raise TypeError(f"{target} is not the click command {cmd_name}")
            self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_LazyGroup,
    lazy_commands=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
