"""The simulator's sockets: the EA's four (REP command, PUSH data, PUSH live, PUSH trade events) or the
single-socket variant (one REP that answers with the JSON itself). Binds like the EA; clients connect."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
import zmq
import zmq.asyncio

from tools.mt5sim.engine import Account, action_error, dumps

log = structlog.get_logger("mt5sim")


@dataclass(frozen=True)
class Ports:
    command: int = 15555
    data: int = 15556
    live: int = 15557
    events: int = 15558


class BridgeSimulator:
    """Serve one :class:`Account` on ZeroMQ sockets until :meth:`stop`."""

    def __init__(
        self,
        account: Account,
        ports: Ports = Ports(),
        *,
        host: str = "127.0.0.1",
        single_socket: bool = False,
        tick_interval_ms: int = 100,
    ) -> None:
        self.account = account
        self.ports = ports
        self.host = host
        self.single_socket = single_socket
        self.tick_interval = tick_interval_ms / 1000
        self.subscriptions: dict[str, bool] = {}  # symbol -> first tick skipped already (the EA skips one)
        self.drop_replies = 0  # test hook: execute the next N TRADEs but never answer them (an EA dying mid-order)
        self.received = asyncio.Event()  # set on every request (tests wait on it instead of sleeping)
        self.requests_seen = 0
        self._ctx: zmq.asyncio.Context | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._socks: list[zmq.asyncio.Socket] = []

    async def start(self) -> None:
        self._ctx = zmq.asyncio.Context()
        self.cmd = self._bind(zmq.REP, self.ports.command)
        if not self.single_socket:
            self.data = self._bind(zmq.PUSH, self.ports.data)
            self.events = self._bind(zmq.PUSH, self.ports.events)
        self.live = self._bind(zmq.PUSH, self.ports.live)
        self._tasks = [asyncio.create_task(self._serve()), asyncio.create_task(self._market())]
        log.info("mt5 simulator listening", host=self.host, ports=vars(self.ports) if False else self.ports.__dict__,
                 single_socket=self.single_socket, hedging=self.account.hedging)  # fmt: skip

    def _bind(self, kind: int, port: int) -> zmq.asyncio.Socket:
        assert self._ctx is not None
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if kind == zmq.PUSH:
            sock.setsockopt(zmq.SNDHWM, 1000)
        sock.bind(f"tcp://{self.host}:{port}")
        self._socks.append(sock)
        return sock

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for s in self._socks:
            s.close(0)
        self._socks.clear()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    async def _push(self, sock: zmq.asyncio.Socket, payload: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):  # the EA sends non-blocking: a message nobody takes is lost
            await sock.send(dumps(payload), zmq.NOBLOCK)

    async def _serve(self) -> None:
        while True:
            raw = await self.cmd.recv()
            self.requests_seen += 1
            self.received.set()
            if not raw:
                log.warning("empty request: the command socket is wedged (as the EA's is)")
                await asyncio.Event().wait()
            try:
                req = msgspec.json.decode(raw)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except (msgspec.DecodeError, ValueError):
                req = None
            if self.single_socket:
                out = self.account.handle(req) if req is not None else None
                reply = out.data[-1] if out is not None else action_error(65537, "RequestHandler")
                if self.drop_replies and req is not None and req.get("action") == "TRADE":
                    self.drop_replies -= 1
                    await asyncio.Event().wait()
                await self.cmd.send(dumps(reply))
                continue
            await self.cmd.send(b"OK")
            if req is None:
                await self._push(self.data, action_error(65537, "RequestHandler"))
                await self._push(self.data, action_error(65538, "RequestHandler"))
                continue
            if req.get("action") == "CONFIG" and req.get("chartTF") == "TICK":
                self.subscriptions.setdefault(str(req.get("symbol")), False)
            if req.get("action") == "RESET":
                self.subscriptions.clear()
            out = self.account.handle(req)
            for event in out.events:
                await self._push(self.events, event)
            if self.drop_replies and req.get("action") == "TRADE":
                self.drop_replies -= 1
                print(f"mt5-sim: TRADE executed, reply withheld (test hook): {req.get('comment')}", flush=True)
                continue
            for msg in out.data:
                await self._push(self.data, msg)

    async def _market(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.account.step()
            await self.publish_ticks()

    async def publish_ticks(self) -> None:
        now = self.account.now_ms()
        for symbol, seen in list(self.subscriptions.items()):
            if symbol not in self.account.specs:
                continue
            if not seen:  # the EA skips the first price after a subscription
                self.subscriptions[symbol] = True
                continue
            tick = {"status": "CONNECTED", "symbol": symbol, "timeframe": "TICK",
                    "data": [now, self.account.bid[symbol], self.account.ask[symbol]]}  # fmt: skip
            await self._push(self.live, tick)


def main(argv: list[str] | None = None) -> int:
    """``ordermesh mt5-sim``: run the bridge simulator until SIGTERM/SIGINT."""
    import argparse

    p = argparse.ArgumentParser(prog="ordermesh mt5-sim")
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: Any) -> None:
    from decimal import Decimal

    p.add_argument("--host", default="127.0.0.1", help="address to bind (the EA binds *; default 127.0.0.1)")
    p.add_argument("--command-port", type=int, default=15555)
    p.add_argument("--data-port", type=int, default=15556)
    p.add_argument("--live-port", type=int, default=15557)
    p.add_argument("--events-port", type=int, default=15558)
    p.add_argument("--single-socket", action="store_true", help="the single-socket variant (REP answers JSON)")
    p.add_argument("--hedging", action="store_true", help="a hedging account (default: netting)")
    p.add_argument("--stock", action="store_true", help="exactly the upstream EA: no SYMBOLINFO, BOOK, deal tickets")
    p.add_argument("--balance", type=Decimal, default=Decimal(100000))
    p.add_argument("--currency", default="USD")
    p.add_argument("--leverage", type=Decimal, default=Decimal(100))
    p.add_argument("--commission-per-lot", type=Decimal, default=Decimal("3.5"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ticket-base", type=int, default=100_000_001)
    p.add_argument("--tick-interval-ms", type=int, default=100)
    p.add_argument(
        "--drop-trade-replies",
        type=int,
        default=0,
        metavar="N",
        help="test hook: execute the next N TRADE requests but never answer them (an EA dying mid-order)",
    )


def run(args: Any) -> int:
    import signal

    account = Account(
        hedging=args.hedging, currency=args.currency, balance=args.balance, leverage=args.leverage,
        commission_per_lot=args.commission_per_lot, seed=args.seed, ticket_base=args.ticket_base,
        stock=args.stock, single_socket=args.single_socket,
    )  # fmt: skip
    ports = Ports(args.command_port, args.data_port, args.live_port, args.events_port)

    async def serve() -> None:
        sim = BridgeSimulator(account, ports, host=args.host, single_socket=args.single_socket,
                              tick_interval_ms=args.tick_interval_ms)  # fmt: skip
        sim.drop_replies = args.drop_trade_replies
        await sim.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"mt5-sim ready on {args.host}:{ports.command}", flush=True)
        await stop.wait()
        await sim.stop()

    asyncio.run(serve())
    return 0
