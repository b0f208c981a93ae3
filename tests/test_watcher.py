"""The job watcher: one scheduler listing per tick decides which jobs stopped executing."""

from __future__ import annotations

import asyncio

from ltx_reconcile.api.client import ApiClient
from ltx_reconcile.api.model import CreateImageRequest, JobCreated
from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import serve_emulator
from ltx_reconcile.watcher import PACING_MIN_SAMPLES, JobWatcher
from testing.emulator import TEST_TOKEN, fast_config

EMAIL = "user@example.com"


async def _create(client: ApiClient, seed: int) -> str:
    request = CreateImageRequest(email=EMAIL, prompt="a lighthouse", seed=seed)
    created = await client.create_image(request)
    assert isinstance(created, JobCreated)
    return created.job_id


def test_a_job_created_while_a_listing_is_in_flight_is_not_judged_gone_by_it():
    """A listing read before a job existed, but answered after the job was watched, must
    not free the job's slot: only jobs watched before a listing was asked for are judged."""
    # Jobs of a second (time scale 0.001); the first listing is answered 0.3 s late.
    config = fast_config(latency_median_s={"flux": 1000.0}, latency_sigma=0.0)
    hold = FaultRule(FaultKind.HOLD, endpoint="scheduler", delay_s=0.3, times=1)

    async def scenario(base_url: str) -> tuple[bool, bool, bool]:
        async with ApiClient(base_url, TEST_TOKEN) as client:
            watcher = JobWatcher(client, interval_s=0.01)
            ticking = asyncio.create_task(watcher.run())
            first = watcher.watch(await _create(client, 1))
            await asyncio.sleep(0.05)  # the first tick's listing is now being held
            second = watcher.watch(await _create(client, 2))
            await asyncio.sleep(0.4)  # the held listing, without `second`, has been answered
            freed_early = second.left.is_set() or first.left.is_set()
            statuses = await asyncio.wait_for(asyncio.gather(first.done, second.done), 10)
            ticking.cancel()
            return freed_early, statuses[0].is_done, statuses[1].is_done

    with serve_emulator(config) as emulator:
        emulator.set_faults(FaultConfig(rules=(hold,)))
        assert asyncio.run(scenario(emulator.base_url)) == (False, True, True)


def test_ticks_are_paced_by_how_long_jobs_run_and_still_find_each_job_promptly():
    """Once a few jobs have shown how long they run, the watcher does not list while every
    watched job is still mid-way: far fewer listings than a watcher that lists every
    interval, run side by side under the same load, and each job still found gone within a
    few intervals of its end."""
    latency_s, interval_s, warmup, paced = 0.5, 0.01, PACING_MIN_SAMPLES, 4
    # The emulator's time scale is 0.001: a median of 500 "seconds" is 0.5 s.
    config = fast_config(latency_median_s={"flux": latency_s * 1000}, latency_sigma=0.0)

    async def scenario(base_url: str, *, pace: bool) -> tuple[int, float]:
        async with ApiClient(base_url, TEST_TOKEN) as client:
            watcher = JobWatcher(client, interval_s=interval_s, pace=pace)
            ticking = asyncio.create_task(watcher.run())
            loop = asyncio.get_running_loop()
            worst_lag = 0.0
            listed_before = 0
            for seed in range(warmup + paced):  # one after another, as one job slot runs
                if seed == warmup:
                    listed_before = watcher.listings
                created_at = loop.time()
                watch = watcher.watch(await _create(client, seed))
                await asyncio.wait_for(watch.left.wait(), 10)
                if seed >= warmup:
                    worst_lag = max(worst_lag, loop.time() - created_at - latency_s)
            ticking.cancel()
            return watcher.listings - listed_before, worst_lag

    async def both(base_url: str) -> tuple[tuple[int, float], tuple[int, float]]:
        return await scenario(base_url, pace=True), await scenario(base_url, pace=False)

    with serve_emulator(config) as emulator:
        (listings, worst_lag_s), (baseline, _lag) = asyncio.run(both(emulator.base_url))
    # Unloaded, the ratio is about 20; on a machine loaded far past its cores, stalls of
    # the event loop blur the run times it learns, but it stays above 2.
    assert listings * 2 <= baseline, (listings, baseline)
    assert worst_lag_s < 0.3, worst_lag_s
