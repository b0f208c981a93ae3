"""The backoff arithmetic: full jitter under a doubling cap, Retry-After as a floor."""

from __future__ import annotations

import random

from ltx_reconcile.api.retry import DEFAULT_RETRY_POLICY, Backoff


def test_default_policy_follows_the_contract_guidance():
    """GETs: 0.5 s doubling to 30 s; a busy create: 5 s doubling to 60 s (contract 4.4)."""
    safe, busy = DEFAULT_RETRY_POLICY.safe, DEFAULT_RETRY_POLICY.create_busy
    assert (safe.first_delay_s, safe.max_delay_s) == (0.5, 30.0)
    assert (busy.first_delay_s, busy.max_delay_s) == (5.0, 60.0)


def test_delays_stay_under_a_doubling_ceiling_capped_at_the_maximum():
    """The n-th delay is drawn from [0, min(cap, first * 2**n)]."""
    backoff = Backoff(attempts=10, first_delay_s=0.5, max_delay_s=30.0)
    rng = random.Random(1)
    for retry in range(10):
        ceiling = min(30.0, 0.5 * 2**retry)
        delays = [backoff.delay_s(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter, not equal jitter: some delays fall in the lower half.
        assert min(delays) < ceiling / 2


def test_retry_after_is_a_floor_but_the_cap_still_bounds_it():
    """A server's Retry-After lengthens the wait, but never past the policy's cap."""
    backoff = Backoff(attempts=3, first_delay_s=0.001, max_delay_s=60.0)
    assert backoff.delay_s(0, random.Random(0), retry_after_s=5.0) == 5.0
    fast = Backoff(attempts=3, first_delay_s=0.001, max_delay_s=0.01)
    assert fast.delay_s(0, random.Random(0), retry_after_s=5.0) == 0.01
