"""Flags that choose which API a command talks to, and the embedded emulator behind
`--emulator`.

`--emulator` serves the project's own emulator in this process, on loopback, with a
throwaway token, so the demo and a newcomer's first run need no account. Its accounts,
jobs and ledger are kept in `emulator.db` beside the state, so a second run shows, in
the emulator's own ledger, that nothing was paid for twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import click
from pydantic import SecretStr

from ltx_reconcile.workspace import Workspace

__all__ = ["EMULATOR_TIME_SCALE", "api_options", "connect"]

F = TypeVar("F", bound=Callable[..., Any])

EMULATOR_TIME_SCALE: Final = 0.1
"""The embedded emulator's jobs take about a second: realistic order, quick demo."""
_EMULATOR_TOKEN: Final = "embedded-emulator"  # noqa: S105 - not a secret: loopback only


def api_options(func: F) -> F:
    """`--api-url`, `--email` and `--emulator`."""
    for decorator in reversed(
        [
            click.option(
                "--api-url",
                default=None,
                metavar="URL",
                help="API base URL [default: $LTX_API_URL, else https://api.useapi.net/v1/ltxstudio].",
            ),
            click.option(
                "--email",
                default=None,
                help="LTX Studio account to use [default: $LTX_EMAIL, else the only account].",
            ),
            click.option(
                "--emulator",
                is_flag=True,
                help="Use the embedded LTX Studio emulator (no token, no cost, offline).",
            ),
        ]
    ):
        func = decorator(func)
    return func


@contextlib.contextmanager
def connect(
    workspace: Workspace, api_url: str | None, email: str | None, *, emulator: bool
) -> Iterator[Workspace]:
    """The workspace with its API settings chosen by the flags; serves the emulator if asked."""
    settings = workspace.settings
    if email is not None:
        settings = settings.with_changes(email=email)
    if not emulator:
        if api_url is not None:
            settings = settings.with_changes(api_url=api_url)
        yield Workspace(workspace.paths, settings)
        return
    from ltx_reconcile.emulator.config import EmulatorConfig
    from ltx_reconcile.emulator.server import serve_emulator

    workspace.paths.state.parent.mkdir(parents=True, exist_ok=True)
    config = EmulatorConfig(
        time_scale=EMULATOR_TIME_SCALE,
        state_path=workspace.paths.state.parent / "emulator.db",
    )
    with serve_emulator(config) as running:
        yield Workspace(
            workspace.paths,
            settings.with_changes(
                api_url=running.base_url,
                token=SecretStr(_EMULATOR_TOKEN),
                poll_interval_s=min(settings.poll_interval_s, 0.25),
            ),
        )
