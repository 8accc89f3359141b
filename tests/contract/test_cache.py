"""The cache contract: the same behaviour on every backend.

Every test taking `cache` runs once on the in-process cache and once on a real
throwaway Redis (a fresh key namespace per test).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.servers import free_port
from transact.kernel.cache import Cache, MemoryCache, cache_from_url
from transact.kernel.errors import BackendUnavailable

SHORT = 0.15  # seconds: a TTL that runs out within the test
PAST_SHORT = 0.3  # seconds: comfortably after SHORT has run out


# --- get / set ---------------------------------------------------------------


async def test_missing_key_reads_as_none(cache: Cache) -> None:
    assert await cache.get("never-set") is None
    assert await cache.ttl("never-set") is None
    assert await cache.take("never-set") is None


async def test_set_then_get_returns_the_bytes(cache: Cache) -> None:
    await cache.set("k", b"value")
    assert await cache.get("k") == b"value"


async def test_values_are_binary_safe(cache: Cache) -> None:
    blob = bytes(range(256)) * 4
    await cache.set("bin", blob)
    assert await cache.get("bin") == blob


async def test_empty_value_is_not_a_missing_key(cache: Cache) -> None:
    await cache.set("empty", b"")
    assert await cache.get("empty") == b""
    assert await cache.set_if_absent("empty", b"other") is False
    assert await cache.take("empty") == b""
    assert await cache.get("empty") is None


async def test_keys_are_independent(cache: Cache) -> None:
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get("a") == b"1"
    assert await cache.get("b") == b"2"
    await cache.delete("a")
    assert await cache.get("a") is None
    assert await cache.get("b") == b"2"


async def test_set_overwrites(cache: Cache) -> None:
    await cache.set("k", b"first")
    await cache.set("k", b"second")
    assert await cache.get("k") == b"second"


async def test_get_does_not_consume(cache: Cache) -> None:
    await cache.set("k", b"v")
    assert await cache.get("k") == b"v"
    assert await cache.get("k") == b"v"


# --- TTLs ------------------------------------------------------------------


async def test_value_with_ttl_disappears(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=SHORT)
    assert await cache.get("k") == b"v"
    await asyncio.sleep(PAST_SHORT)
    assert await cache.get("k") is None
    assert await cache.ttl("k") is None


async def test_value_without_ttl_stays(cache: Cache) -> None:
    await cache.set("k", b"v")
    await asyncio.sleep(PAST_SHORT)
    assert await cache.get("k") == b"v"
    assert await cache.ttl("k") is None


async def test_ttl_reports_seconds_left(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=10)
    left = await cache.ttl("k")
    assert left is not None
    assert 9.0 < left <= 10.0


async def test_ttl_counts_down(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=2)
    first = await cache.ttl("k")
    await asyncio.sleep(0.3)
    second = await cache.ttl("k")
    assert first is not None
    assert second is not None
    assert 0.1 < first - second < 1.0


async def test_fractional_ttl_is_honoured(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=1.5)
    left = await cache.ttl("k")
    assert left is not None
    assert 1.0 < left <= 1.5


async def test_overwrite_with_new_ttl_replaces_the_old_one(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=SHORT)
    await cache.set("k", b"w", ttl=30)
    await asyncio.sleep(PAST_SHORT)
    assert await cache.get("k") == b"w"
    left = await cache.ttl("k")
    assert left is not None
    assert left > 25


async def test_overwrite_without_ttl_makes_the_key_persistent(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=SHORT)
    await cache.set("k", b"w")
    assert await cache.ttl("k") is None
    await asyncio.sleep(PAST_SHORT)
    assert await cache.get("k") == b"w"


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5])
async def test_non_positive_ttl_is_rejected(cache: Cache, bad: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await cache.set("k", b"v", ttl=bad)
    with pytest.raises(ValueError, match="ttl"):
        await cache.set_if_absent("k", b"v", ttl=bad)
    with pytest.raises(ValueError, match="ttl"):
        await cache.incr("n", ttl=bad)
    # A rejected call stores nothing.
    assert await cache.get("k") is None
    assert await cache.get("n") is None


@pytest.mark.parametrize("bad", [0, -1])
async def test_non_positive_ttl_is_rejected_on_an_existing_counter(
    cache: Cache, bad: float
) -> None:
    assert await cache.incr("n") == 1
    with pytest.raises(ValueError, match="ttl"):
        await cache.incr("n", ttl=bad)
    assert await cache.get("n") == b"1"


@pytest.mark.parametrize("bad", [0, -1])
async def test_non_positive_ttl_does_not_clobber_an_existing_value(
    cache: Cache, bad: float
) -> None:
    await cache.set("k", b"keep")
    with pytest.raises(ValueError, match="ttl"):
        await cache.set("k", b"lost", ttl=bad)
    assert await cache.get("k") == b"keep"


# --- set_if_absent -----------------------------------------------------------


async def test_set_if_absent_stores_a_free_key(cache: Cache) -> None:
    assert await cache.set_if_absent("k", b"v") is True
    assert await cache.get("k") == b"v"


async def test_set_if_absent_leaves_a_taken_key_alone(cache: Cache) -> None:
    await cache.set("k", b"first", ttl=30)
    assert await cache.set_if_absent("k", b"second", ttl=1) is False
    assert await cache.get("k") == b"first"
    left = await cache.ttl("k")
    assert left is not None
    assert left > 25  # the losing call did not touch the TTL either


async def test_set_if_absent_with_ttl_expires(cache: Cache) -> None:
    assert await cache.set_if_absent("k", b"v", ttl=SHORT) is True
    left = await cache.ttl("k")
    assert left is not None
    assert 0 < left <= SHORT
    await asyncio.sleep(PAST_SHORT)
    assert await cache.get("k") is None


async def test_set_if_absent_succeeds_once_the_old_value_expired(cache: Cache) -> None:
    await cache.set("k", b"old", ttl=SHORT)
    await asyncio.sleep(PAST_SHORT)
    assert await cache.set_if_absent("k", b"new") is True
    assert await cache.get("k") == b"new"


async def test_set_if_absent_succeeds_after_delete(cache: Cache) -> None:
    assert await cache.set_if_absent("k", b"one") is True
    await cache.delete("k")
    assert await cache.set_if_absent("k", b"two") is True
    assert await cache.get("k") == b"two"


async def test_concurrent_set_if_absent_has_exactly_one_winner(cache: Cache) -> None:
    values = [f"v{i}".encode() for i in range(20)]
    results = await asyncio.gather(*(cache.set_if_absent("lock", v, ttl=30) for v in values))
    assert sum(results) == 1
    winner = values[results.index(True)]
    assert await cache.get("lock") == winner


# --- take ------------------------------------------------------------------


async def test_take_returns_and_deletes(cache: Cache) -> None:
    await cache.set("k", b"secret")
    assert await cache.take("k") == b"secret"
    assert await cache.get("k") is None
    assert await cache.take("k") is None


async def test_take_of_an_expired_value_is_none(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=SHORT)
    await asyncio.sleep(PAST_SHORT)
    assert await cache.take("k") is None


async def test_concurrent_takers_only_one_gets_the_value(cache: Cache) -> None:
    for round_ in range(5):
        key = f"once-{round_}"
        await cache.set(key, b"card", ttl=30)
        got = await asyncio.gather(*(cache.take(key) for _ in range(20)))
        assert got.count(b"card") == 1
        assert got.count(None) == 19
        assert await cache.get(key) is None


async def test_concurrent_takers_across_clients_only_one_gets_the_value(
    cache: Cache, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Two processes on one Redis: a second client races the first."""
    if isinstance(cache, MemoryCache):
        others: list[Cache] = [cache]  # one process, one in-memory cache
    else:
        from transact.kernel.cache.redis import RedisCache

        url = request.getfixturevalue("redis_url")
        others = [RedisCache(url, namespace) for _ in range(3)]
    try:
        await cache.set("shared", b"card", ttl=30)
        takers = [c.take("shared") for c in [cache, *others] for _ in range(5)]
        got = await asyncio.gather(*takers)
        assert got.count(b"card") == 1
    finally:
        for other in others:
            if other is not cache:
                await other.close()


# --- delete ----------------------------------------------------------------


async def test_delete_reports_whether_something_was_deleted(cache: Cache) -> None:
    await cache.set("k", b"v")
    assert await cache.delete("k") is True
    assert await cache.get("k") is None
    assert await cache.delete("k") is False
    assert await cache.delete("never-set") is False


async def test_delete_of_an_expired_value_reports_false(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=SHORT)
    await asyncio.sleep(PAST_SHORT)
    assert await cache.delete("k") is False


# --- incr ------------------------------------------------------------------


async def test_incr_counts_from_one(cache: Cache) -> None:
    assert await cache.incr("n") == 1
    assert await cache.incr("n") == 2
    assert await cache.incr("n") == 3
    assert await cache.get("n") == b"3"
    assert await cache.ttl("n") is None


async def test_incr_continues_from_a_stored_number(cache: Cache) -> None:
    await cache.set("n", b"41")
    assert await cache.incr("n") == 42


async def test_incr_counters_are_independent(cache: Cache) -> None:
    assert await cache.incr("a") == 1
    assert await cache.incr("a") == 2
    assert await cache.incr("b") == 1


async def test_incr_with_ttl_expires_and_restarts(cache: Cache) -> None:
    assert await cache.incr("n", ttl=SHORT) == 1
    assert await cache.incr("n", ttl=SHORT) == 2
    left = await cache.ttl("n")
    assert left is not None
    assert 0 < left <= SHORT
    await asyncio.sleep(PAST_SHORT)
    assert await cache.get("n") is None
    assert await cache.incr("n", ttl=SHORT) == 1


async def test_incr_ttl_starts_when_the_counter_is_created(cache: Cache) -> None:
    """A rate-limit window: later increments do not push the expiry back."""
    assert await cache.incr("n", ttl=0.5) == 1
    await asyncio.sleep(0.3)
    assert await cache.incr("n", ttl=0.5) == 2
    left = await cache.ttl("n")
    assert left is not None
    assert left <= 0.25
    await asyncio.sleep(0.35)
    assert await cache.get("n") is None


async def test_concurrent_incr_loses_no_update(cache: Cache) -> None:
    results = await asyncio.gather(*(cache.incr("n", ttl=30) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))
    assert await cache.get("n") == b"50"


# --- ping / close / selection ---------------------------------------------


async def test_ping_succeeds_on_a_live_backend(cache: Cache) -> None:
    await cache.ping()  # raises BackendUnavailable when the backend cannot be reached


async def test_unreachable_redis_ping_raises_without_the_password() -> None:
    from transact.kernel.cache.redis import RedisCache

    backend = RedisCache(f"redis://:hunter2secret@127.0.0.1:{free_port()}/0", "t")
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.ping()
    finally:
        await backend.close()
    message = str(caught.value)
    assert "hunter2secret" not in message
    assert "127.0.0.1" in message
    assert "***" in message


def test_cache_from_url_picks_the_backend() -> None:
    from transact.kernel.cache.redis import RedisCache

    assert isinstance(cache_from_url("memory://"), MemoryCache)
    assert isinstance(cache_from_url("redis://127.0.0.1:6379/0"), RedisCache)


async def test_redis_namespaces_do_not_see_each_other(redis_url: str, namespace: str) -> None:
    from transact.kernel.cache.redis import RedisCache

    one = RedisCache(redis_url, namespace + "a")
    two = RedisCache(redis_url, namespace + "b")
    try:
        await one.set("k", b"one")
        assert await two.get("k") is None
        assert await two.set_if_absent("k", b"two") is True
        assert await one.get("k") == b"one"
        assert await two.take("k") == b"two"
        assert await one.get("k") == b"one"
    finally:
        await one.close()
        await two.close()


async def test_memory_cache_drops_expired_entries_nobody_reads() -> None:
    cache = MemoryCache()
    for i in range(1024):
        await cache.set(f"k{i}", b"v", ttl=0.05)
    await asyncio.sleep(0.1)
    await cache.set("trigger", b"v")  # the 1024th entry triggers a sweep
    assert len(cache._items) == 1
    assert await cache.get("trigger") == b"v"


# --- take_token (token buckets) -------------------------------------------------


async def test_take_token_allows_the_burst_then_refuses_with_a_wait(cache: Cache) -> None:
    waits = [await cache.take_token("b", rate=1.0, burst=3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    # One token a second and the bucket just emptied: the next one is about a second away.
    assert 0.5 < waits[3] <= 1.0


async def test_a_refused_take_takes_nothing(cache: Cache) -> None:
    assert await cache.take_token("b", rate=1.0, burst=1) == 0.0
    first = await cache.take_token("b", rate=1.0, burst=1)
    second = await cache.take_token("b", rate=1.0, burst=1)
    assert 0 < second <= first <= 1.0  # refusals did not dig the bucket deeper


async def test_take_token_refills_over_time(cache: Cache) -> None:
    assert await cache.take_token("b", rate=10.0, burst=2) == 0.0
    assert await cache.take_token("b", rate=10.0, burst=2) == 0.0
    wait = await cache.take_token("b", rate=10.0, burst=2)
    assert 0 < wait <= 0.1
    await asyncio.sleep(wait + 0.05)
    assert await cache.take_token("b", rate=10.0, burst=2) == 0.0


async def test_refill_stops_at_the_burst(cache: Cache) -> None:
    for _ in range(2):
        assert await cache.take_token("b", rate=20.0, burst=2) == 0.0
    await asyncio.sleep(0.3)  # long enough for six tokens; the bucket holds two
    waits = [await cache.take_token("b", rate=20.0, burst=2) for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] > 0


async def test_take_token_with_a_cost(cache: Cache) -> None:
    assert await cache.take_token("b", rate=1.0, burst=5, cost=2) == 0.0
    assert await cache.take_token("b", rate=1.0, burst=5, cost=2) == 0.0
    wait = await cache.take_token("b", rate=1.0, burst=5, cost=2)
    assert 0.5 < wait <= 1.0  # one token left, one more needed
    assert await cache.take_token("b", rate=1.0, burst=5, cost=1) == 0.0


async def test_token_buckets_are_independent(cache: Cache) -> None:
    assert await cache.take_token("one", rate=0.01, burst=1) == 0.0
    assert await cache.take_token("one", rate=0.01, burst=1) > 0
    assert await cache.take_token("two", rate=0.01, burst=1) == 0.0


async def test_an_idle_bucket_vanishes_once_full_again(cache: Cache) -> None:
    assert await cache.take_token("b", rate=10.0, burst=1) == 0.0
    left = await cache.ttl("b")
    assert left is not None
    assert 0 < left <= 0.1
    await asyncio.sleep(PAST_SHORT)
    assert await cache.ttl("b") is None
    assert await cache.take_token("b", rate=10.0, burst=1) == 0.0


@pytest.mark.parametrize(
    ("rate", "burst", "cost"),
    [(0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, -1, 1), (1, 1, 0), (1, 1, -1), (1, 2, 3)],
)
async def test_take_token_rejects_impossible_buckets(
    cache: Cache, rate: float, burst: float, cost: float
) -> None:
    with pytest.raises(ValueError, match=r"rate|burst|cost"):
        await cache.take_token("b", rate=rate, burst=burst, cost=cost)
    assert await cache.ttl("b") is None


async def test_concurrent_takers_never_exceed_the_burst(cache: Cache) -> None:
    waits = await asyncio.gather(*(cache.take_token("b", rate=0.001, burst=10) for _ in range(40)))
    assert waits.count(0.0) == 10
    assert all(w > 0 for w in waits if w != 0.0)


async def test_concurrent_takers_across_clients_never_exceed_the_burst(
    cache: Cache, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Several processes on one Redis take from one bucket."""
    if isinstance(cache, MemoryCache):
        others: list[Cache] = [cache]
    else:
        from transact.kernel.cache.redis import RedisCache

        url = request.getfixturevalue("redis_url")
        others = [RedisCache(url, namespace) for _ in range(3)]
    try:
        takers = [
            c.take_token("b", rate=0.001, burst=7) for c in [cache, *others] for _ in range(10)
        ]
        waits = await asyncio.gather(*takers)
        assert waits.count(0.0) == 7
    finally:
        for other in others:
            if other is not cache:
                await other.close()
