"""The broadcaster: one read per campaign per interval for any number of viewers, the latest
snapshot for a slow viewer, and no reads while nobody listens."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable

from shanju.campaigns.live import Broadcaster, SharedSnapshots, SnapshotCache, offer_latest
from shanju.core.db import Database
from tests.factories import make_campaign


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds (fail after about ten seconds rather than hang)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


class Source:
    """A fake snapshot reader: counts reads per campaign; returns what ``value`` says."""

    def __init__(self) -> None:
        self.reads: dict[int, int] = {}
        self.value: Callable[[int], str] = lambda cid: f"c{cid}"

    def __call__(self, campaign_id: int) -> str:
        self.reads[campaign_id] = self.reads.get(campaign_id, 0) + 1
        return self.value(campaign_id)


def test_a_thousand_viewers_cost_one_read() -> None:
    source = Source()
    hub = Broadcaster(source, interval=3600)  # no second read within the test

    async def main() -> list[str]:
        async def viewer(cid: int, got: list[str]) -> None:
            async with hub.subscribe(cid) as queue:
                got.append(await queue.get())

        got: list[str] = []
        await asyncio.gather(*(viewer(1 if i % 10 else 2, got) for i in range(1000)))
        return got

    got = asyncio.run(main())
    assert len(got) == 1000 and set(got) == {"c1", "c2"}
    assert source.reads == {1: 1, 2: 1}


def test_a_late_viewer_gets_the_latest_snapshot_without_a_read() -> None:
    source = Source()
    hub = Broadcaster(source, interval=3600)

    async def main() -> tuple[str, str]:
        async with hub.subscribe(7) as first:
            one = await first.get()
            async with hub.subscribe(7) as second:
                assert hub.subscribers(7) == 2
                return one, second.get_nowait()

    assert asyncio.run(main()) == ("c7", "c7")
    assert source.reads == {7: 1}


def test_a_slow_viewer_skips_to_the_latest_and_nobody_listening_stops_the_task() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
    for item in ("1", "2", "3"):
        offer_latest(queue, item)
    assert queue.qsize() == 1 and queue.get_nowait() == "3"

    source = Source()
    version = {"n": 0}
    source.value = lambda _cid: f"v{version['n']}"
    hub = Broadcaster(source, interval=0.01)

    async def main() -> list[str]:
        seen: list[str] = []
        async with hub.subscribe(1) as slow:
            seen.append(await slow.get())
            # Five changes while the viewer is not reading: its queue keeps only the last.
            for n in range(1, 6):
                version["n"] = n
                # Two more reads: the second one began after the change.
                target = hub.reads + 2
                await until(lambda: hub.reads >= target)  # noqa: B023
            seen.append(slow.get_nowait())
            assert slow.empty()
        await until(lambda: not hub.running)
        reads = hub.reads
        await asyncio.sleep(0.05)
        assert hub.reads == reads  # nobody listens: no more reads
        return seen

    assert asyncio.run(main()) == ["v0", "v5"]


def test_unchanged_snapshots_are_not_pushed_again() -> None:
    source = Source()
    hub = Broadcaster(source, interval=0.01)

    async def main() -> int:
        async with hub.subscribe(3) as queue:
            await queue.get()
            await until(lambda: hub.reads >= 4)
            return queue.qsize()

    assert asyncio.run(main()) == 0


def test_page_views_share_a_snapshot_for_its_lifetime(db: Database) -> None:
    with db.transaction() as s:
        campaign = make_campaign(s)
    cache = SnapshotCache(ttl=3600)
    with db.transaction(write=False) as s:
        first = cache.get(session=s, campaign=campaign)
        assert cache.get(session=s, campaign=campaign) is first
    assert cache.reads == 1
    cache.ttl = 0
    with db.transaction(write=False) as s:
        assert cache.get(session=s, campaign=campaign) is not first
    assert cache.reads == 2


REDIS_URL = os.environ.get("SHANJU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_processes_sharing_redis_read_a_campaign_once_per_tick(db: Database) -> None:
    # Two caches, as two server processes, sharing Redis: the first reads the database and
    # stores the snapshot; the second takes it from Redis (no read of its own), equal to it.
    with db.transaction() as s:
        campaign = make_campaign(s)
    namespace = f"test-{uuid.uuid4().hex}"
    first = SnapshotCache(ttl=0.5, shared=SharedSnapshots(REDIS_URL, namespace=namespace))
    second = SnapshotCache(ttl=0.5, shared=SharedSnapshots(REDIS_URL, namespace=namespace))
    with db.transaction(write=False) as s:
        mine = first.get(session=s, campaign=campaign)
        theirs = second.get(session=s, campaign=campaign)
    assert (first.reads, second.reads) == (1, 0)
    assert theirs == mine and theirs is not mine
    # A tick later (the stored one is stale): one of them claims and reads again, the other
    # keeps the one before (at most one tick older) without reading.
    time.sleep(0.6)
    with db.transaction(write=False) as s:
        second.get(session=s, campaign=campaign)
        first.get(session=s, campaign=campaign)
    assert first.reads + second.reads == 2


def test_a_broker_url_with_a_namespace_shares_snapshots_under_it(db: Database) -> None:
    # SHANJU_SUMMIT_BROKER_URL may name a deployment's namespace (several deployments on one
    # Redis, summit/broker.py): the snapshots are shared (no read by the second process) and
    # stored under that namespace; another deployment's never sees them.
    with db.transaction() as s:
        campaign = make_campaign(s)
    deployment = f"dep-{uuid.uuid4().hex[:8]}"
    url = f"{REDIS_URL}?namespace={deployment}"
    first = SnapshotCache(ttl=5, shared=SharedSnapshots(url, namespace="db"))
    second = SnapshotCache(ttl=5, shared=SharedSnapshots(url, namespace="db"))
    other = SnapshotCache(ttl=5, shared=SharedSnapshots(f"{REDIS_URL}?namespace=x{deployment}",
                                                        namespace="db"))
    with db.transaction(write=False) as s:
        first.get(session=s, campaign=campaign)
        second.get(session=s, campaign=campaign)
        other.get(session=s, campaign=campaign)
    assert (first.reads, second.reads, other.reads) == (1, 0, 1)
    shared = first.shared
    assert shared is not None
    keys = shared.client.keys(f"shanju:{deployment}:db:live:snapshot:*")
    assert f"shanju:{deployment}:db:live:snapshot:{campaign.id}".encode() in keys
    shared.client.delete(*shared.client.keys(f"shanju:*{deployment}:db:*"))


def test_without_redis_each_process_reads_for_itself(db: Database) -> None:
    with db.transaction() as s:
        campaign = make_campaign(s)
    # Nothing listens on port 1: the cache says so in the log and reads the database.
    cache = SnapshotCache(ttl=60, shared=SharedSnapshots("redis://127.0.0.1:1/0",
                                                         namespace="unreachable"))
    with db.transaction(write=False) as s:
        assert cache.get(session=s, campaign=campaign).campaign_id == campaign.id
    assert cache.reads == 1
