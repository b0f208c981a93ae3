"""Webhook notifications to `replyUrl` (section 5, E39).

One notification per job, when it reaches a terminal state, unless it was cancelled first
(E28). Each is a JSON POST of the job's status body with the artifact present, retried
after the configured delays until a 2xx arrives; a duplicate fault sends it twice. The
sender owns its httpx client and its tasks, and `aclose` ends both.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import httpx

from ltx_reconcile.emulator.jobs import Job
from ltx_reconcile.emulator.state import EmulatorState
from ltx_reconcile.emulator.wire import status_body

__all__ = ["USER_AGENT", "WebhookSender"]

USER_AGENT: Final = "ltx-emulator-webhook/1"


class WebhookSender:
    """Delivers job notifications in background tasks on the server's event loop."""

    def __init__(self, state: EmulatorState, client: httpx.AsyncClient) -> None:
        self._state = state
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, job: Job) -> None:
        """Notify `job.params.reply_url` once the job ends."""
        if job.params.reply_url is None:
            return
        task = asyncio.create_task(self._deliver_when_done(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel pending notifications and close the client."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()

    async def _deliver_when_done(self, job: Job) -> None:
        await asyncio.sleep(max(0.0, job.ends_s - self._state.now_s()))
        current = self._state.job(job.job_id)
        read = self._state.final_status(job.job_id)
        if current is None or current.cancelled or read is None or job.params.reply_url is None:
            self._state.mark_webhook_done(job.job_id)
            return
        body = status_body(read, self._state.signer, job.origin, self._state.now_ms())
        for _ in range(2 if job.duplicate_webhook else 1):
            await self._post_with_retries(job.params.reply_url, body)
        self._state.mark_webhook_done(job.job_id)

    async def _post_with_retries(self, url: str, body: dict[str, object]) -> bool:
        config = self._state.config
        delays = (0.0, *(config.scaled(d) for d in config.webhook_retry_delays_s))
        for delay in delays:
            await asyncio.sleep(delay)
            try:
                response = await self._client.post(
                    url,
                    json=body,
                    headers={"User-Agent": USER_AGENT},
                    timeout=config.webhook_timeout_s,
                )
            except httpx.HTTPError:
                continue
            if response.is_success:
                return True
        return False
