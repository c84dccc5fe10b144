from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from nats.aio.msg import Msg

from ordermesh.contract.codec import INTENT_CODEC
from ordermesh.contract.subjects import EXEC, INTENTS
from ordermesh.contract.wire import Fixed, Intent, Side
from ordermesh.platform.bus import Bus, BusError
from ordermesh.platform.config import NatsSettings
from ordermesh.platform.natsserver import free_port
from tests.harness import eventually


def _intent(intent_id: str) -> Intent:
    return Intent(
        intent_id=intent_id,
        strategy_id="s1",
        account="acc",
        symbol="EURUSD",
        side=Side.BUY,
        sizing=Fixed(qty=Decimal("0.10")),
    )


async def test_publish_with_msg_id_is_deduplicated(bus: Bus) -> None:
    subject = bus.subjects.intent("s1")
    first = await bus.publish(subject, _intent("i-1"), msg_id="i-1")
    again = await bus.publish(subject, _intent("i-1"), msg_id="i-1")
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    assert await bus.stream_last_seq(INTENTS) == 1


async def test_pull_consumer_redelivers_unacked_until_acked(bus: Bus) -> None:
    subject = bus.subjects.intent("s1")
    await bus.publish(subject, _intent("i-2"), msg_id="i-2")
    psub = await bus.pull_consumer(INTENTS, "t1", bus.subjects.all_intents, ack_wait_s=0.5)
    (msg,) = await psub.fetch(1, timeout=2)
    assert INTENT_CODEC.decode(msg.data).intent_id == "i-2"
    # not acked: it comes back after ack_wait
    (again,) = await psub.fetch(1, timeout=3)
    assert again.metadata.num_delivered == 2
    await again.ack_sync()
    try:
        await psub.fetch(1, timeout=0.8)
    except TimeoutError:
        pass
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("an acked message was delivered again")


async def test_provision_is_idempotent(bus: Bus) -> None:
    await bus.publish(bus.subjects.intent("s1"), _intent("i-3"), msg_id="i-3")
    await bus.provision()  # second time: updates in place, never purges
    assert await bus.stream_last_seq(INTENTS) == 1


async def test_kv_mirror_loads_and_follows(bus: Bus) -> None:
    from ordermesh.contract.subjects import KV_ACCOUNTS

    kv = await bus.kv(KV_ACCOUNTS)
    await kv.put("a", b"1")
    changes: list[tuple[str, bytes | None]] = []
    seen = asyncio.Event()

    def on_change(key: str, value: bytes | None) -> None:
        changes.append((key, value))
        if key == "b":
            seen.set()

    mirror = await bus.kv_mirror(KV_ACCOUNTS, on_change)
    assert mirror.values == {"a": b"1"}  # loaded before kv_mirror returns
    await kv.put("b", b"2")
    await asyncio.wait_for(seen.wait(), 5)
    assert mirror.values == {"a": b"1", "b": b"2"}
    await kv.delete("a")
    await asyncio.wait_for(_until(lambda: "a" not in mirror.values), 5)
    assert changes[-1] == ("a", None)
    await mirror.stop()


async def _until(cond) -> None:  # type: ignore[no-untyped-def]
    while not cond():
        await asyncio.sleep(0.01)


async def test_connect_gives_up_at_its_deadline_when_nats_is_unreachable() -> None:
    # nats-py's own connect loop retried for ever (max_reconnect_attempts=-1), so the deadline never applied:
    # every service and CLI command hung printing "nats error" twice a second.
    port = free_port()  # nothing listens there
    bus = Bus(NatsSettings(url=f"nats://127.0.0.1:{port}", connect_timeout_s=0.2), "test")
    with pytest.raises(BusError, match=f"cannot connect to NATS at nats://127.0.0.1:{port}"):
        await asyncio.wait_for(bus.connect(deadline_s=1.0), 20)
    assert not bus.connected


async def test_a_feed_delivers_in_order_and_recovers_its_consumer_without_gap_or_repeat(bus: Bus) -> None:
    """A feed whose consumer disappears on the server (deleted, expired, a restarted node) re-creates it from the
    next stream sequence: every message once, in order."""
    got: list[bytes] = []
    subject = "om.exec.paper.s-feed"

    async def on(msg: Msg) -> None:
        got.append(msg.data)

    feed = await bus.feed(EXEC, subject, on, heartbeat_s=0.2)
    try:
        for i in range(3):
            await bus.js.publish(subject, b"%d" % i)
        await bus.js.publish("om.exec.paper.someone-else", b"not mine")
        await eventually(lambda: _at_least(got, 3), what="the first three")
        consumers = [c.name for c in await bus.js.consumers_info(EXEC) if c.name.startswith("feed_")]
        assert len(consumers) == 1
        await bus.js.delete_consumer(EXEC, consumers[0])
        for i in range(3, 6):
            await bus.js.publish(subject, b"%d" % i)
        await eventually(lambda: _at_least(got, 6), what="the rest, after the consumer came back")
        assert got == [b"%d" % i for i in range(6)]
        assert feed.resets >= 1
    finally:
        await feed.stop()


async def _at_least(items: list[bytes], n: int) -> bool:
    return len(items) >= n


async def test_provision_never_drops_a_setting_an_operator_made_nor_lowers_replicas(bus: Bus) -> None:
    """Provisioning brings its own fields to the configured shape and leaves everything else as it found it."""
    info = await bus.js.stream_info(INTENTS)
    tuned = info.config.evolve(max_bytes=64 * 1024 * 1024, max_msgs_per_subject=1_000_000)
    await bus.js.update_stream(tuned)
    await bus.provision()
    after = (await bus.js.stream_info(INTENTS)).config
    assert after.max_bytes == 64 * 1024 * 1024 and after.max_msgs_per_subject == 1_000_000
    # the configured fields still win where they are ours
    assert after.duplicate_window == bus.settings.duplicate_window_s


def test_a_stream_keeps_its_higher_replica_count() -> None:
    from nats.js.api import StreamConfig

    from ordermesh.contract.subjects import merged_stream

    existing = StreamConfig(name="S", subjects=["a.>"], num_replicas=3, max_bytes=10, duplicate_window=60)
    wanted = StreamConfig(name="S", subjects=["a.>"], num_replicas=1, duplicate_window=600)
    out = merged_stream(existing, wanted)
    assert out is not None
    assert out.num_replicas == 3 and out.max_bytes == 10 and out.duplicate_window == 600
    assert merged_stream(out, wanted) is None  # nothing to change: no update at all
