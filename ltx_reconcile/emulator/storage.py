"""Pre-signed artifact URLs in the shape of Google Cloud Storage's (section 6, E41).

`UrlSigner` signs a bucket path with an HMAC over the path and its validity window, so a
URL cannot be stretched or pointed at another object. Verification reports only "expired"
(403), as storage does for a bad or stale signature; the token-leak guard (400 when an
`Authorization` header arrives) is checked first, by the route.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from ltx_reconcile.emulator.errors import StorageError

__all__ = ["BUCKET", "STORAGE_PREFIX", "SignedUrl", "UrlSigner", "expired_error"]

BUCKET: Final = "lt-infinity-prd"
STORAGE_PREFIX: Final = f"/storage/{BUCKET}/"
_EXPIRED: Final = "Request has expired"


@dataclass(frozen=True, slots=True)
class SignedUrl:
    """A URL and the expiry the API reports for it."""

    url: str
    expires_ms: int

    def to_json(self) -> dict[str, str]:
        """`assetUrl` and `expirationDateString` (a decimal string of ms)."""
        return {"assetUrl": self.url, "expirationDateString": str(self.expires_ms)}


class UrlSigner:
    """Signs and checks storage URLs with one secret key."""

    def __init__(self, key: bytes, ttl_s: float) -> None:
        self._key = key
        self._ttl_ms = max(1, round(ttl_s * 1000))

    def __repr__(self) -> str:
        return f"UrlSigner(ttl_ms={self._ttl_ms})"

    def sign(self, origin: str, path: str, now_ms: int) -> SignedUrl:
        """A fresh URL for the bucket `path`, valid for the configured TTL from `now_ms`."""
        date = str(now_ms)
        expires = _seconds_text(self._ttl_ms)
        query = {
            "X-Goog-Date": date,
            "X-Goog-Expires": expires,
            "X-Goog-Signature": self._signature(path, date, expires),
        }
        return SignedUrl(
            f"{origin}{STORAGE_PREFIX}{path}?{urlencode(query)}", now_ms + self._ttl_ms
        )

    def verify(self, path: str, query: Mapping[str, str], now_ms: int) -> None:
        """Raise 403 `Request has expired` unless the URL is genuine and still valid."""
        date = query.get("X-Goog-Date", "")
        expires = query.get("X-Goog-Expires", "")
        signature = query.get("X-Goog-Signature", "")
        expected = self._signature(path, date, expires)
        if not hmac.compare_digest(signature, expected):
            raise StorageError(403, _EXPIRED)
        try:
            expires_ms = int(date) + round(float(expires) * 1000)
        except ValueError:
            raise StorageError(403, _EXPIRED) from None
        if now_ms >= expires_ms:
            raise StorageError(403, _EXPIRED)

    def _signature(self, path: str, date: str, expires: str) -> str:
        message = f"{path}\n{date}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _seconds_text(milliseconds: int) -> str:
    """Seconds as a short decimal: `3600`, `0.05`."""
    whole, rest = divmod(milliseconds, 1000)
    return f"{whole}" if rest == 0 else f"{whole}.{rest:03d}".rstrip("0")


def expired_error() -> StorageError:
    """The answer for a URL that is, or is made to look, expired."""
    return StorageError(403, _EXPIRED)
