"""The bus contract: the same behaviour on every backend."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.contract.conftest import FAST, BusFactory
from tests.contract.messages import Ping, Pong
from tests.waiting import eventually
from transact.contracts import Message
from transact.kernel.bus import BusOptions


async def test_delivers_a_published_message_intact(make_bus: BusFactory) -> None:
    bus = await make_bus()
    got: list[Message] = []

    async def handler(m: Message) -> None:
        got.append(m)

    bus.subscribe("test.ping", "g", handler)
    await bus.start()
    sent = Ping(tenant_id="t1", n=7, correlation_id="c-1")
    assert await bus.publish(sent) is True
    await eventually(lambda: len(got) == 1)
    assert got[0] == sent
    assert isinstance(got[0], Ping)


async def test_topics_are_separate(make_bus: BusFactory) -> None:
    bus = await make_bus()
    pings: list[Message] = []
    pongs: list[Message] = []

    async def on_ping(m: Message) -> None:
        pings.append(m)

    async def on_pong(m: Message) -> None:
        pongs.append(m)

    bus.subscribe("test.ping", "g", on_ping)
    bus.subscribe("test.pong", "g", on_pong)
    await bus.start()
    await bus.publish(Ping(tenant_id="t", n=1))
    await bus.publish(Pong(tenant_id="t", n=2))
    await eventually(lambda: len(pings) == 1 and len(pongs) == 1)
    assert pings[0].type == "test.ping"
    assert pongs[0].type == "test.pong"


async def test_each_group_gets_every_message(make_bus: BusFactory) -> None:
    bus = await make_bus()
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def recorder(group: str):  # type: ignore[no-untyped-def]
        async def handler(m: Message) -> None:
            assert isinstance(m, Ping)
            seen[group].append(m.n)

        return handler

    bus.subscribe("test.ping", "a", recorder("a"))
    bus.subscribe("test.ping", "b", recorder("b"))
    await bus.start()
    for n in range(10):
        await bus.publish(Ping(tenant_id="t", n=n))
    await eventually(lambda: len(seen["a"]) == 10 and len(seen["b"]) == 10)
    assert sorted(seen["a"]) == sorted(seen["b"]) == list(range(10))


async def test_consumers_in_one_group_share_the_work(make_bus: BusFactory) -> None:
    first, second = await make_bus(), await make_bus()
    handled: Counter[int] = Counter()
    by_consumer: dict[str, list[int]] = {"one": [], "two": []}

    def worker(name: str):  # type: ignore[no-untyped-def]
        async def handler(m: Message) -> None:
            assert isinstance(m, Ping)
            handled[m.n] += 1
            by_consumer[name].append(m.n)
            await asyncio.sleep(0.01)

        return handler

    first.subscribe("test.ping", "workers", worker("one"))
    second.subscribe("test.ping", "workers", worker("two"))
    await first.start()
    await second.start()
    for n in range(30):
        await first.publish(Ping(tenant_id="t", n=n))
    await eventually(lambda: sum(handled.values()) >= 30)
    await asyncio.sleep(0.2)
    assert handled == Counter(range(30)), "every message handled exactly once in the group"


async def test_an_idle_consumer_takes_work_while_another_is_busy(make_bus: BusFactory) -> None:
    first, second = await make_bus(), await make_bus()
    busy = asyncio.Event()
    release = asyncio.Event()
    handled: list[tuple[str, int]] = []

    def worker(name: str):  # type: ignore[no-untyped-def]
        async def handler(m: Message) -> None:
            assert isinstance(m, Ping)
            handled.append((name, m.n))
            if m.n == 0:
                busy.set()
                await release.wait()

        return handler

    first.subscribe("test.ping", "workers", worker("one"))
    second.subscribe("test.ping", "workers", worker("two"))
    await first.start()
    await second.start()
    await first.publish(Ping(tenant_id="t", n=0))
    await asyncio.wait_for(busy.wait(), 5)
    await first.publish(Ping(tenant_id="t", n=1))
    await eventually(lambda: len(handled) == 2)
    (busy_name, _), (other_name, n) = handled
    assert n == 1
    assert other_name != busy_name
    release.set()


async def test_a_failed_delivery_is_redelivered(make_bus: BusFactory) -> None:
    bus = await make_bus()
    attempts: list[int] = []

    async def flaky(m: Message) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("transient")

    bus.subscribe("test.ping", "g", flaky)
    await bus.start()
    await bus.publish(Ping(tenant_id="t"))
    await eventually(lambda: len(attempts) == 2)
    await asyncio.sleep(FAST.visibility_timeout + 0.3)
    assert len(attempts) == 2, "acked after the successful retry, not delivered again"
    assert await bus.dead_letters("test.ping", "g") == []


async def test_a_hung_consumer_loses_its_message_after_the_visibility_timeout(
    make_bus: BusFactory,
) -> None:
    first, second = await make_bus(), await make_bus()
    hung = asyncio.Event()
    done: list[str] = []

    async def hangs(m: Message) -> None:
        hung.set()
        await asyncio.Event().wait()

    async def works(m: Message) -> None:
        done.append(m.id)

    first.subscribe("test.ping", "g", hangs)
    await first.start()
    sent = Ping(tenant_id="t")
    await first.publish(sent)
    await asyncio.wait_for(hung.wait(), 5)
    second.subscribe("test.ping", "g", works)
    await second.start()
    await asyncio.sleep(FAST.visibility_timeout / 3)
    assert done == [], "not redelivered before the visibility timeout"
    await eventually(lambda: done == [sent.id], within=FAST.visibility_timeout * 4)


async def test_a_stopped_consumer_hands_back_unacked_messages(make_bus: BusFactory) -> None:
    first = await make_bus()
    started = asyncio.Event()
    done: list[str] = []

    async def slow(m: Message) -> None:
        started.set()
        await asyncio.sleep(30)

    first.subscribe("test.ping", "g", slow)
    await first.start()
    sent = Ping(tenant_id="t")
    await first.publish(sent)
    await asyncio.wait_for(started.wait(), 5)
    await first.stop()  # the process dies mid-handler

    second = await make_bus()

    async def works(m: Message) -> None:
        done.append(m.id)

    second.subscribe("test.ping", "g", works)
    await second.start()
    await eventually(lambda: done == [sent.id], within=FAST.visibility_timeout * 4)


async def test_dead_letters_after_max_deliveries(make_bus: BusFactory) -> None:
    bus = await make_bus()
    attempts: list[str] = []

    async def always_fails(m: Message) -> None:
        attempts.append(m.id)
        raise ValueError("poison")

    bus.subscribe("test.ping", "g", always_fails)
    await bus.start()
    poison = Ping(tenant_id="t", n=13)
    await bus.publish(poison)
    await eventually(lambda: len(attempts) >= FAST.max_deliveries)
    dead = []

    async def collect() -> None:
        dead.extend(await bus.dead_letters("test.ping", "g"))

    for _ in range(100):
        dead.clear()
        await collect()
        if dead:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(FAST.visibility_timeout + 0.2)
    assert len(attempts) == FAST.max_deliveries
    assert len(dead) == 1
    assert dead[0].message_id == poison.id
    assert dead[0].deliveries == FAST.max_deliveries
    assert dead[0].message() == poison


async def test_a_hung_message_is_dead_lettered_once_out_of_deliveries(
    make_bus: BusFactory,
) -> None:
    options = BusOptions(visibility_timeout=0.3, retry_delay=0.1, max_deliveries=2)
    bus = await make_bus(options)
    attempts: list[str] = []

    async def hangs(m: Message) -> None:
        attempts.append(m.id)
        await asyncio.sleep(30)

    for _ in range(3):  # two get stuck; the third is free to give up on the message
        bus.subscribe("test.ping", "g", hangs)
    await bus.start()
    await bus.publish(Ping(tenant_id="t"))
    await eventually(lambda: len(attempts) == 2, within=5)
    for _ in range(100):
        if await bus.dead_letters("test.ping", "g"):
            break
        await asyncio.sleep(0.05)
    dead = await bus.dead_letters("test.ping", "g")
    assert [d.deliveries for d in dead] == [2]
    assert len(attempts) == 2


async def test_publishing_the_same_message_id_twice_delivers_once(make_bus: BusFactory) -> None:
    bus = await make_bus()
    got: list[str] = []

    async def handler(m: Message) -> None:
        got.append(m.id)

    bus.subscribe("test.ping", "g", handler)
    await bus.start()
    message = Ping(tenant_id="t", n=1)
    assert await bus.publish(message) is True
    assert await bus.publish(message) is False
    await bus.publish(Ping(tenant_id="t", n=2))
    await eventually(lambda: len(got) == 2)
    await asyncio.sleep(0.1)
    assert got.count(message.id) == 1


async def test_ping_succeeds_on_a_live_backend(make_bus: BusFactory) -> None:
    bus = await make_bus()
    await bus.ping()


@pytest.mark.parametrize(
    "bad",
    [{"visibility_timeout": 0}, {"max_deliveries": 0}, {"retry_delay": 5, "visibility_timeout": 1}],
)
def test_options_reject_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|cannot"):
        BusOptions(**bad)  # type: ignore[arg-type]
