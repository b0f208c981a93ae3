"""A real S3-compatible server for the tests: moto's server mode, on loopback, in a thread.

moto is a pip dependency of the `dev` extra, so tests start it themselves: `.ci/run` needs
nothing more. A test that needs it is skipped, with the reason, only when it cannot start
(moto not installed), and fails instead when the environment variable CI is set, since CI
must never skip the S3 store's tests.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from testing.s3server import child_env

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["TEST_CREDENTIALS", "S3Server", "running_s3_server"]

TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ltx-test-key-id",
    "AWS_SECRET_ACCESS_KEY": "ltx-test-secret-canary",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""What the emulator accepts (anything); the secret is a canary no output may hold."""


@dataclass
class S3Server:
    """A running S3 emulator: its URL and a client that bypasses the store under test."""

    endpoint: str
    _client: Any = field(default=None, repr=False)

    def client(self) -> S3Client:
        """A plain boto3 client of the emulator, for arranging and inspecting buckets."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session(
                aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                region_name=TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
            ).client(
                "s3", endpoint_url=self.endpoint, config=Config(s3={"addressing_style": "path"})
            )
        return self._client

    def new_bucket(self) -> str:
        """Create a bucket no other test uses, and return its name."""
        name = f"ltx-test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """A CLI child's environment for this server: test credentials, no ~/.aws files."""
        return child_env(self.endpoint, TEST_CREDENTIALS)


def running_s3_server() -> Iterator[S3Server]:
    """Start moto's server on 127.0.0.1 (a free port), yield it, stop it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as err:
        reason = f"the S3 emulator cannot start: {err} (pip install 'ltx-reconcile[dev]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must not skip the S3 tests")
        pytest.skip(reason)
    # werkzeug logs every request at INFO: thousands of lines of noise in a failure report.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
