"""`ltx-reconcile emulator`: serve the LTX Studio API emulator in the foreground.

The command only turns flags into an `EmulatorConfig` and calls `run_emulator`; every
behaviour lives in `ltx_reconcile.emulator`. It prints the API base URL once the server
accepts connections (flushed, so a parent process can wait for that line) and runs until
Ctrl-C. Tokens given with `--token` are never printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ltx_reconcile.emulator.config import (
    DEFAULT_LATENCY_MEDIAN_S,
    AccountConfig,
    EmulatorConfig,
    FaultConfig,
)
from ltx_reconcile.errors import ExitCode

__all__ = ["build_config", "emulator"]

F = TypeVar("F", bound=Callable[..., Any])

_FAULT_RATES = (
    ("--failure-rate", "job_failure_rate", "Share of jobs that fail (E36)."),
    ("--status-before-accept-rate", "status_before_accept_rate", "Share of requests answered 429/5xx/596 before any job exists."),
    ("--status-after-accept-rate", "status_after_accept_rate", "Share of creates answered 500/502/503 after the job was charged."),
    ("--reset-after-accept-rate", "reset_after_accept_rate", "Share of creates whose connection is reset after the job was charged."),
    ("--reset-before-read-rate", "reset_before_read_rate", "Share of requests whose connection is reset before they are read."),
    ("--slow-rate", "slow_rate", "Share of requests delayed by --slow-delay-s."),
    ("--lag-window-rate", "lag_window_rate", "Share of jobs that report completed without assetUrl for --lag-window-s."),
    ("--truncate-download-rate", "truncate_download_rate", "Share of downloads cut off half way."),
    ("--corrupt-download-rate", "corrupt_download_rate", "Share of downloads with flipped bytes."),
    ("--early-expiry-rate", "early_expiry_rate", "Share of downloads refused as expired before their time."),
    ("--duplicate-webhook-rate", "duplicate_webhook_rate", "Share of webhook notifications sent twice."),
)  # fmt: skip


def _fault_options(func: F) -> F:
    """The E19 fault flags, one per `FaultConfig` field."""
    decorators = [
        click.option(flag, name, type=click.FloatRange(0, 1), default=0.0, help=text)
        for flag, name, text in _FAULT_RATES
    ]
    decorators += [
        click.option("--fault-seed", type=int, default=0, help="Seed of the fault RNG."),
        click.option("--slow-delay-s", type=float, default=1.0, help="Delay of a slow answer."),
        click.option(
            "--hold-create-s",
            type=float,
            default=0.0,
            help="Hold every create answer open this long after the job was charged.",
        ),
        click.option(
            "--lag-window-s", type=float, default=1.0, help="Length of a no-assetUrl window."
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _parse_account(text: str) -> AccountConfig:
    """`EMAIL[:MAXJOBS[:BALANCE]]`."""
    email, *rest = text.split(":")
    if not email or "@" not in email or len(rest) > 2:
        msg = f"{text!r} is not EMAIL[:MAXJOBS[:BALANCE]]"
        raise click.BadParameter(msg, param_hint="--account")
    try:
        max_jobs = int(rest[0]) if rest and rest[0] else 20
        balance = int(rest[1]) if len(rest) > 1 and rest[1] else None
    except ValueError:
        msg = f"{text!r}: MAXJOBS and BALANCE must be integers"
        raise click.BadParameter(msg, param_hint="--account") from None
    return AccountConfig(email=email.lower(), max_jobs=max_jobs, balance=balance)


def _parse_medians(values: Sequence[str]) -> dict[str, float]:
    """`SECONDS` for every model, or `MODEL=SECONDS`."""
    medians = dict(DEFAULT_LATENCY_MEDIAN_S)
    for value in values:
        model, sep, seconds = value.rpartition("=")
        try:
            median = float(seconds)
        except ValueError:
            raise click.BadParameter(f"{value!r}", param_hint="--latency-median-s") from None
        if not sep:
            medians = dict.fromkeys(medians, median)
        elif model in medians:
            medians[model] = median
        else:
            msg = f"unknown model {model!r} (one of: {', '.join(medians)})"
            raise click.BadParameter(msg, param_hint="--latency-median-s")
    return medians


def build_config(options: dict[str, Any]) -> EmulatorConfig:
    """The `EmulatorConfig` the command's flags describe."""
    faults = FaultConfig(
        seed=options["fault_seed"],
        slow_delay_s=options["slow_delay_s"],
        hold_create_s=options["hold_create_s"],
        lag_window_s=options["lag_window_s"],
        **{name: options[name] for _, name, _ in _FAULT_RATES},
    )
    accounts = tuple(_parse_account(text) for text in options["account"]) or (AccountConfig(),)
    return EmulatorConfig(
        base_path=options["base_path"],
        tokens=tuple(options["token"]),
        accounts=accounts,
        test_mode=options["test_mode"],
        subscription_active=not options["subscription_inactive"],
        starting_balance=options["starting_balance"],
        time_scale=options["time_scale"],
        latency_median_s=_parse_medians(options["latency_median_s"]),
        latency_sigma=options["latency_sigma"],
        latency_seed=options["latency_seed"],
        artifact_lag_reads=options["artifact_lag_reads"],
        job_ttl_s=options["job_ttl_s"],
        url_ttl_s=options["url_ttl_s"],
        unseeded=options["unseeded"],
        nondeterministic_output=options["nondeterministic_output"],
        state_path=options["state"],
        faults=faults,
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port (0: a free one).")
@click.option("--test-mode", is_flag=True, help="Serve the /_emulator/ control surface.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Multiply every emulated duration.")  # fmt: skip
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), help="SQLite file keeping state across restarts.")  # fmt: skip
@click.option("--account", multiple=True, metavar="EMAIL[:MAXJOBS[:BALANCE]]", help="Pre-created account (repeatable) [default: demo@ltx-emulator.test].")  # fmt: skip
@click.option("--token", multiple=True, metavar="TOKEN", help="Accepted Bearer token (repeatable); none accepts any.")  # fmt: skip
@click.option("--base-path", default="/v1/ltxstudio", show_default=True, help="API path prefix.")
@click.option("--subscription-inactive", is_flag=True, help="Answer 402 Subscription required.")
@click.option("--starting-balance", type=int, default=10_000, show_default=True, help="Credits of a new account.")  # fmt: skip
@click.option("--latency-median-s", multiple=True, metavar="[MODEL=]SECONDS", help="Median job duration, for all models or one.")  # fmt: skip
@click.option("--latency-sigma", type=float, default=0.25, show_default=True, help="Log-normal sigma of job durations.")  # fmt: skip
@click.option("--latency-seed", type=int, default=None, help="Seed of the duration RNG.")
@click.option("--artifact-lag-reads", type=click.IntRange(min=0), default=1, show_default=True, help="Status reads after completion that omit the artifact.")  # fmt: skip
@click.option("--job-ttl-s", type=float, default=7 * 24 * 3600.0, help="How long finished job records stay readable [default: 7 days].")  # fmt: skip
@click.option("--url-ttl-s", type=float, default=3600.0, show_default=True, help="Validity of signed URLs (scaled by --time-scale).")  # fmt: skip
@click.option("--unseeded", type=click.Choice(["random", "derive"]), default="random", show_default=True, help="Seed of requests without one.")  # fmt: skip
@click.option("--nondeterministic-output", is_flag=True, help="Add per-job noise to every image.")
@_fault_options
def emulator(host: str, port: int, **options: Any) -> int:
    """Serve the LTX Studio API emulator until Ctrl-C.

    Example: ltx-reconcile emulator --port 8123 --test-mode --time-scale 0.01
    """
    # Imported here: starlette and uvicorn cost every other command's start-up time.
    from ltx_reconcile.emulator.server import run_emulator

    config = build_config(options)

    def announce(base_url: str) -> None:
        click.echo(f"Emulator serving {base_url}")
        sys.stdout.flush()

    run_emulator(config, host=host, port=port, on_ready=announce)
    return int(ExitCode.OK)
