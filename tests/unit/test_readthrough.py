"""CatalogCache: hit, miss, stale-while-revalidate, back-off and sharing, on a fake wall clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from proxy.backplane.memory import MemoryBackplane
from proxy.cache.clock import Clocks
from proxy.cache.entry import CatalogEntry
from proxy.cache.freshness import Freshness
from proxy.cache.lookup import Lookup, Outcome
from proxy.cache.readthrough import CatalogCache
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from tests.support.clock import START, FakeClock
from tests.support.waiting import eventually

KEY = "test:account:catalog:v1"
TTL = 300.0
STALE_TTL = 600.0


@dataclass(frozen=True)
class Payload:
    body: bytes
    content_type: str


class Loader:
    """Counts calls; answers ``[n]`` for the n-th call, fails when told, waits on a gate."""

    def __init__(self, name: str = "a") -> None:
        self.name = name
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    def hold(self) -> asyncio.Event:
        self.gate = asyncio.Event()
        return self.gate

    async def __call__(self) -> Payload:
        self.calls += 1
        number = self.calls
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError(f"load {number} failed")
        return Payload(body=f'["{self.name}{number}"]'.encode(), content_type="application/json")


class CountingStore(MemoryBackplane):
    """A memory store that counts reads, to show the hit path does no store I/O."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: 0.0)  # never expires on its own: the cache decides
        self.reads = 0

    async def get(self, key: str) -> bytes | None:
        self.reads += 1
        return await super().get(key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def loader() -> Loader:
    return Loader()


def make_cache(store: MemoryBackplane, loader: Loader, clock: FakeClock) -> CatalogCache:
    return CatalogCache(
        store=store,
        key=KEY,
        freshness=Freshness(ttl=TTL, stale_ttl=STALE_TTL),
        loader=loader,
        metrics=Metrics(),
        turns=Turns(store, name="lock", topic="catalog", ttl=30, owner="test"),
        clocks=Clocks(wall=clock, monotonic=clock),
    )


@pytest.fixture
async def cache(
    store: CountingStore, loader: Loader, clock: FakeClock
) -> AsyncIterator[CatalogCache]:
    catalog = make_cache(store, loader, clock)
    yield catalog
    await catalog.close()


async def settle(cache: CatalogCache) -> None:
    """Wait for a background refresh to end."""
    await eventually(lambda: not cache.refreshing, within=2.0)
    await asyncio.sleep(0)


async def test_miss_then_hit(
    cache: CatalogCache, loader: Loader, clock: FakeClock, store: CountingStore
) -> None:
    first = await cache.lookup()

    assert first.outcome is Outcome.MISS
    assert not first.collapsed
    assert first.entry.body == b'["a1"]'
    assert first.entry.content_type == "application/json"
    assert first.entry.fetched_at == START
    assert first.age == 0.0
    assert first.ttl_left == TTL
    assert loader.calls == 1
    assert cache.local == first.entry
    stored = await store.get(KEY)
    assert stored is not None
    assert CatalogEntry.from_bytes(stored) == first.entry

    clock.advance(88)
    second = await cache.lookup()

    assert second.outcome is Outcome.HIT
    assert second.entry == first.entry
    assert second.age == 88.0
    assert second.ttl_left == 212.0
    assert loader.calls == 1


async def test_hit_in_process_does_no_store_read(
    cache: CatalogCache, store: CountingStore, clock: FakeClock
) -> None:
    await cache.lookup()
    reads = store.reads

    for _ in range(5):
        clock.advance(10)
        assert (await cache.lookup()).outcome is Outcome.HIT

    assert store.reads == reads


async def test_stale_is_served_at_once_with_one_background_refresh(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    original = (await cache.lookup()).entry
    clock.advance(TTL + 30)
    gate = loader.hold()

    lookups = await asyncio.gather(*(cache.lookup() for _ in range(20)))

    # All answered while the refresh is still held at the gate (it reads the store first).
    await eventually(lambda: loader.calls == 2)
    assert cache.refreshing
    assert {lookup.outcome for lookup in lookups} == {Outcome.STALE}
    assert {lookup.entry for lookup in lookups} == {original}
    assert {lookup.ttl_left for lookup in lookups} == {-30.0}
    assert {lookup.age for lookup in lookups} == {TTL + 30}

    gate.set()
    await settle(cache)
    after = await cache.lookup()

    assert after.outcome is Outcome.HIT
    assert after.entry.body == b'["a2"]'
    assert after.entry.fetched_at == START + TTL + 30
    assert after.ttl_left == TTL
    assert loader.calls == 2


async def test_stale_until_ttl_plus_stale_ttl_then_miss(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    await cache.lookup()
    loader.fail = True  # background refreshes fail, so the entry only ages
    clock.advance(TTL + STALE_TTL - 0.5)

    assert (await cache.lookup()).outcome is Outcome.STALE
    await settle(cache)
    assert loader.calls == 2

    # Past the entry's life and past the backoff of the failed refresh (1 s at most): a miss.
    clock.advance(1.0)
    loader.fail = False
    gate = loader.hold()
    pending = asyncio.create_task(cache.lookup())
    await eventually(lambda: loader.calls == 3, within=2.0)
    await asyncio.sleep(0.01)
    assert not pending.done()  # a miss waits for the loader
    gate.set()
    lookup = await pending

    assert lookup.outcome is Outcome.MISS
    assert lookup.entry.body == b'["a3"]'
    assert lookup.age == 0.0
    assert loader.calls == 3


async def test_failed_load_raises_and_keeps_old_entry(
    cache: CatalogCache, loader: Loader, clock: FakeClock, store: CountingStore
) -> None:
    original = (await cache.lookup()).entry
    clock.advance(TTL + STALE_TTL + 1)
    loader.fail = True

    with pytest.raises(RuntimeError, match="load 2 failed"):
        await cache.lookup()

    assert loader.calls == 2
    assert cache.local == original
    stored = await store.get(KEY)
    assert stored is not None
    assert CatalogEntry.from_bytes(stored) == original
    assert not cache.refreshing


async def test_failed_refresh_keeps_serving_stale_entry(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    original = (await cache.lookup()).entry
    clock.advance(TTL + 5)
    loader.fail = True

    with pytest.raises(RuntimeError):
        await cache.refresh()
    lookup = await cache.lookup()

    assert lookup.outcome is Outcome.STALE
    assert lookup.entry == original
    assert cache.local == original


async def test_concurrent_misses_share_one_load(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    gate = loader.hold()
    tasks = [asyncio.create_task(cache.lookup()) for _ in range(10)]
    await eventually(lambda: loader.calls == 1, within=2.0)
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in tasks)
    clock.advance(3)  # the load takes time: fetched_at is when it landed
    gate.set()
    lookups = await asyncio.gather(*tasks)

    assert loader.calls == 1
    assert {lookup.outcome for lookup in lookups} == {Outcome.MISS}
    assert len({lookup.entry for lookup in lookups}) == 1
    assert [lookup.collapsed for lookup in lookups].count(False) == 1
    assert lookups[0].entry.fetched_at == START + 3
    assert {lookup.age for lookup in lookups} == {0.0}


async def test_failed_background_refresh_backs_off(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    await cache.lookup()
    clock.advance(TTL + 1)
    loader.fail = True

    assert (await cache.lookup()).outcome is Outcome.STALE
    await settle(cache)
    assert loader.calls == 2

    # First pause: 1 s, jittered down to no less than half of it.
    for _ in range(5):
        assert (await cache.lookup()).outcome is Outcome.STALE
    clock.advance(0.499)
    assert (await cache.lookup()).outcome is Outcome.STALE
    await settle(cache)
    assert loader.calls == 2

    clock.advance(0.501)
    assert (await cache.lookup()).outcome is Outcome.STALE
    await settle(cache)
    assert loader.calls == 3

    # The pause doubles after a second failure: 1-2 s.
    clock.advance(0.999)
    await cache.lookup()
    await settle(cache)
    assert loader.calls == 3
    clock.advance(1.001)
    await cache.lookup()
    await settle(cache)
    assert loader.calls == 4

    # A success resets the back-off: the next stale get refreshes at once.
    loader.fail = False
    clock.advance(4)
    await cache.lookup()
    await settle(cache)
    assert loader.calls == 5
    fresh = await cache.lookup()
    assert fresh.outcome is Outcome.HIT
    assert fresh.entry.body == b'["a5"]'


async def test_entry_from_another_instance_is_adopted(
    cache: CatalogCache, loader: Loader, clock: FakeClock, store: CountingStore
) -> None:
    other_loader = Loader(name="b")
    other = make_cache(store, other_loader, clock)
    try:
        await cache.lookup()
        clock.advance(TTL + 100)
        written = await other.refresh()
        assert other_loader.calls == 1

        lookup = await cache.lookup()
    finally:
        await other.close()

    assert lookup.outcome is Outcome.HIT
    assert lookup.entry == written.entry
    assert lookup.entry.body == b'["b1"]'
    assert cache.local == written.entry
    assert loader.calls == 1
    assert not cache.refreshing


async def test_fresh_instance_reads_shared_entry(store: CountingStore, clock: FakeClock) -> None:
    first_loader, second_loader = Loader("a"), Loader("b")
    first = make_cache(store, first_loader, clock)
    second = make_cache(store, second_loader, clock)
    try:
        written = (await first.lookup()).entry
        clock.advance(10)
        lookup = await second.lookup()
    finally:
        await first.close()
        await second.close()

    assert lookup.outcome is Outcome.HIT
    assert lookup.entry == written
    assert lookup.age == 10.0
    assert second_loader.calls == 0


async def test_older_shared_entry_does_not_replace_newer_local(
    cache: CatalogCache, loader: Loader, clock: FakeClock, store: CountingStore
) -> None:
    local = (await cache.lookup()).entry
    older = CatalogEntry.create(b'["older"]', "application/json", START - 50)
    await store.set(KEY, older.to_bytes(), ttl=10_000)
    clock.advance(TTL + 1)
    loader.hold()  # keep the background refresh from landing

    lookup = await cache.lookup()

    assert lookup.outcome is Outcome.STALE
    assert lookup.entry == local
    assert cache.local == local


async def test_corrupt_shared_entry_is_a_miss(
    cache: CatalogCache, loader: Loader, store: CountingStore
) -> None:
    await store.set(KEY, b"\x00garbage written by someone else", ttl=10_000)

    lookup = await cache.lookup()

    assert lookup.outcome is Outcome.MISS
    assert loader.calls == 1
    stored = await store.get(KEY)
    assert stored is not None
    assert CatalogEntry.from_bytes(stored) == lookup.entry


async def test_refresh_coalesces_with_running_load(cache: CatalogCache, loader: Loader) -> None:
    gate = loader.hold()
    first = asyncio.create_task(cache.refresh())
    await eventually(lambda: loader.calls == 1, within=2.0)
    second = asyncio.create_task(cache.refresh())
    third = asyncio.create_task(cache.lookup())
    await asyncio.sleep(0.01)
    gate.set()
    lookups: list[Lookup] = list(await asyncio.gather(first, second, third))

    assert loader.calls == 1
    assert [lookup.collapsed for lookup in lookups] == [False, True, True]
    assert {lookup.outcome for lookup in lookups} == {Outcome.MISS}
    assert {lookup.entry.body for lookup in lookups} == {b'["a1"]'}


async def test_refresh_waits_out_a_background_refresh_and_loads_again(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    await cache.lookup()
    clock.advance(TTL + 1)
    gate = loader.hold()
    assert (await cache.lookup()).outcome is Outcome.STALE
    assert cache.refreshing
    await eventually(lambda: loader.calls == 2, within=2.0)

    # That fetch began before the operator asked: its answer may predate what they fixed.
    pending = asyncio.create_task(cache.refresh())
    await asyncio.sleep(0.01)
    gate.set()
    lookup = await pending

    assert loader.calls == 3
    assert not lookup.collapsed
    assert lookup.outcome is Outcome.MISS
    assert lookup.entry.body == b'["a3"]'


async def test_refresh_on_fresh_entry_loads_again(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    await cache.lookup()
    clock.advance(5)
    lookup = await cache.refresh()

    assert loader.calls == 2
    assert lookup.outcome is Outcome.MISS
    assert not lookup.collapsed
    assert lookup.entry.body == b'["a2"]'
    assert lookup.entry.fetched_at == START + 5


async def test_close_cancels_background_refresh(
    cache: CatalogCache, loader: Loader, clock: FakeClock
) -> None:
    original = (await cache.lookup()).entry
    clock.advance(TTL + 1)
    loader.hold()
    await cache.lookup()
    assert cache.refreshing

    await cache.close()

    assert not cache.refreshing
    assert cache.local == original


async def test_properties(cache: CatalogCache) -> None:
    assert cache.local is None
    assert not cache.refreshing
    assert cache.freshness == Freshness(ttl=TTL, stale_ttl=STALE_TTL)


async def test_hit_reuses_one_lookup_while_its_whole_seconds_hold(
    cache: CatalogCache, clock: FakeClock
) -> None:
    assert cache.hit() is None  # nothing cached yet: the caller must await get()
    await cache.lookup()
    clock.advance(10.25)
    first = cache.hit()
    assert first is not None
    assert (first.outcome, int(first.age), int(first.ttl_left)) == (Outcome.HIT, 10, 289)
    clock.advance(0.5)  # age 10.75: same whole seconds, same object
    assert cache.hit() is first
    clock.advance(0.5)  # age 11.25: a new second, a new Lookup
    second = cache.hit()
    assert second is not None
    assert second is not first
    assert (int(second.age), int(second.ttl_left)) == (11, 288)
    assert await cache.lookup() is second  # get() takes the same path


@pytest.mark.parametrize("ttl", [1.5, 2.0, 300.0, 300.7])
async def test_a_reused_lookup_always_tells_the_exact_whole_seconds(
    store: CountingStore, loader: Loader, clock: FakeClock, ttl: float
) -> None:
    catalog = CatalogCache(
        store=store,
        key=KEY,
        freshness=Freshness(ttl=ttl, stale_ttl=STALE_TTL),
        loader=loader,
        metrics=Metrics(),
        turns=Turns(store, name="lock", topic="catalog", ttl=30, owner="test"),
        clocks=Clocks(wall=clock, monotonic=clock),
    )
    fetched = (await catalog.lookup()).entry.fetched_at
    step = 0.05
    while (age := clock.now - fetched) < ttl + 1:
        lookup = catalog.hit()
        if age >= ttl:
            assert lookup is None, age
        else:
            assert lookup is not None, age
            # Every consumer (Age, Cache-Status ttl, max-age, catalog block) reads these.
            assert int(lookup.age) == int(age), age
            assert int(lookup.ttl_left) == int(ttl - age), age
        clock.advance(step)
    await catalog.close()


async def test_hit_with_a_clock_behind_the_entry_says_age_zero(
    cache: CatalogCache, clock: FakeClock
) -> None:
    await cache.lookup()
    clock.advance(-5)  # another replica's clock was ahead when it fetched
    lookup = cache.hit()
    assert lookup is not None
    assert (lookup.age, lookup.ttl_left) == (0.0, TTL)
    clock.advance(6)
    later = cache.hit()
    assert later is not None
    assert int(later.age) == 1


async def test_stale_answers_are_reused_like_hits_and_read_the_store_once_a_second(
    cache: CatalogCache, loader: Loader, clock: FakeClock, store: CountingStore
) -> None:
    await cache.lookup()
    clock.advance(TTL + 10.2)
    loader.fail = True
    first = await cache.lookup()
    assert first.outcome is Outcome.STALE
    await settle(cache)
    reads = store.reads

    served = [cache.hit() or await cache.lookup() for _ in range(50)]

    assert all(lookup is first for lookup in served), "the same prepared answer is reused"
    assert store.reads == reads
    clock.advance(1.0)
    later = cache.hit() or await cache.lookup()
    assert later.outcome is Outcome.STALE
    assert later is not first
    assert int(later.age) == int(first.age) + 1
    assert store.reads == reads + 1


class FlakyStore(CountingStore):
    """A store whose reads fail (a miss, and the store says degraded) while ``failing``."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    @property
    def state(self) -> str:
        return "degraded" if self.failing else "ok"

    async def get(self, key: str) -> bytes | None:
        if self.failing:
            self.reads += 1
            return None
        return await super().get(key)


async def test_an_announced_entry_is_read_once_the_store_answers_again(
    loader: Loader, clock: FakeClock
) -> None:
    store = FlakyStore()
    cache = make_cache(store, loader, clock)
    try:
        first = (await cache.lookup()).entry
        clock.advance(10)
        newer = CatalogEntry.create(b'["from another replica"]', "application/json", clock())
        await store.set(KEY, newer.to_bytes(), ttl=10_000)
        store.failing = True
        cache.shared_changed()

        during = await cache.lookup()  # the read fails: still the entry held, still fresh
        assert during.entry == first
        assert cache.hit() is None  # the announced change is still to be read
        store.failing = False
        after = await cache.lookup()
    finally:
        await cache.close()

    assert after.entry == newer
    assert cache.hit() is not None
    assert loader.calls == 1
