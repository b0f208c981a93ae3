"""The LTX Studio API client: wire models, retry policy and the async `ApiClient`.

Nothing here imports the emulator; the two are independent readings of the contract.
"""

from __future__ import annotations

from ltx_reconcile.api.client import POLL_STEP_S, ApiClient
from ltx_reconcile.api.download import ArtifactUrlExpiredError, Download, PartialDownloadError
from ltx_reconcile.api.model import (
    EXPIRY_MARGIN_MS,
    Account,
    AccountCapacity,
    AssetList,
    AssetListItem,
    AssetListMeta,
    CreateImageRequest,
    JobCreated,
    JobState,
    JobStatus,
    SchedulerAvailable,
    SchedulerEntry,
    SignedAsset,
)
from ltx_reconcile.api.retry import DEFAULT_RETRY_POLICY, Backoff, RetryPolicy

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "EXPIRY_MARGIN_MS",
    "POLL_STEP_S",
    "Account",
    "AccountCapacity",
    "ApiClient",
    "ArtifactUrlExpiredError",
    "AssetList",
    "AssetListItem",
    "AssetListMeta",
    "Backoff",
    "CreateImageRequest",
    "Download",
    "JobCreated",
    "JobState",
    "JobStatus",
    "PartialDownloadError",
    "RetryPolicy",
    "SchedulerAvailable",
    "SchedulerEntry",
    "SignedAsset",
]
