"""Wall-clock formats the API uses: ISO-8601 UTC with milliseconds, and `MM:SS` (E26)."""

from __future__ import annotations

import datetime as dt

__all__ = ["elapsed_mm_ss", "iso_utc_ms", "now_ms"]


def iso_utc_ms(epoch_ms: int) -> str:
    """`2025-06-03T12:34:56.789Z` for a time in ms since the Unix epoch."""
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def elapsed_mm_ss(seconds: float) -> str:
    """Whole minutes and seconds, each at least two digits; minutes may pass 59."""
    whole = max(0, int(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def now_ms(now_s: float) -> int:
    """A time in seconds as integer milliseconds."""
    return int(now_s * 1000)
