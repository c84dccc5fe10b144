"""The pipelined consumer's bookkeeping, without a server (the system tests run it against one)."""

from __future__ import annotations

from typing import Any

from ordermesh.platform.pipeline import Puller
from tests.harness import eventually


class _Nc:
    def __init__(self) -> None:
        self.requests: list[bytes] = []

    async def publish(self, subject: str, body: bytes, reply: str = "") -> None:
        self.requests.append(body)


class _Bus:
    connected = True

    def __init__(self) -> None:
        self.nc = _Nc()


async def test_requests_are_topped_up_within_room_and_a_dropped_request_is_forgotten_at_its_expiry() -> None:
    bus: Any = _Bus()
    room = [10]

    async def on_msg(_: Any) -> None:
        pass

    puller = Puller(bus, "S", "d", on_msg, room=lambda: room[0], batch=8, expires_s=0.01)
    await puller.top_up()
    assert bus.nc.requests == [b'{"batch": 8, "expires": 10000000}'] and puller.requested == 8
    await puller.top_up()  # more than half a batch still coming: nothing asked
    assert len(bus.nc.requests) == 1
    for _ in range(5):
        puller._delivered()
    assert puller.requested == 3
    room[0] = 4  # only 4 fit in hand now: ask for 1 more, not 5
    await puller.top_up()
    assert bus.nc.requests[-1] == b'{"batch": 1, "expires": 10000000}' and puller.requested == 4

    # the server dropped both requests (a reconnect) and no 408 came: forgotten after expiry, so the flow goes on
    async def forgotten() -> bool:
        puller._forget_expired()
        return puller.requested == 0

    await eventually(forgotten, timeout=5, what="the dropped requests forgotten")
