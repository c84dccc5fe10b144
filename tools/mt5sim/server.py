"""The EA's sockets around :class:`~tools.mt5sim.ea.ExpertAdvisor`, and ``ordermesh mt5-sim``.

Like JsonAPI.mq5 (BindSockets, OnTimer, RequestHandler, InformClientSocket): four bound sockets, REP command,
PUSH data, PUSH live, PUSH trade events, with SNDHWM 1000 and LINGER 1000; one loop that, like OnTimer, streams
prices and then handles at most one request: ``OK`` on the REP socket before the work, the answer on the data
socket, the request's trade events after it. Every push is non-blocking, so a message sent while no PULL peer is
connected is lost. An empty request is never handled, and the REP socket, owing a reply, wedges for good. A
reload (OnDeinit + OnInit) closes and rebinds every socket and forgets the subscriptions. The single-socket
variant (ejtraderMT) answers on the REP socket itself: see :mod:`tools.mt5sim.ea`.

Fault injection for tests (in process): ``drop_replies``, ``drop_events``, :meth:`BridgeSimulator.delay_next`,
:meth:`BridgeSimulator.errors_before`, :meth:`BridgeSimulator.reload`; on the account ``inject``,
``timeout_but_execute``, ``set_price``, ``fill_partly``, ``market_closed``, ``connected``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import structlog
import zmq
import zmq.asyncio

from tools.mt5sim.cjaval import serialize
from tools.mt5sim.ea import ExpertAdvisor, action_done_or_error
from tools.mt5sim.engine import Account
from tools.mt5sim.errors import error_desc

log = structlog.get_logger("mt5sim")


@dataclass(frozen=True)
class Ports:
    command: int = 15555
    data: int = 15556
    live: int = 15557
    events: int = 15558


class BridgeSimulator:
    """Serve one :class:`Account` through the EA on ZeroMQ sockets until :meth:`stop`."""

    def __init__(
        self,
        account: Account,
        ports: Ports = Ports(),
        *,
        host: str = "127.0.0.1",
        single_socket: bool = False,
        tick_interval_ms: int = 100,
        timer_ms: int = 5,
        move_prices: bool = True,
        chart_symbol: str = "EURUSD",
        symbolinfo: str = "none",
        book: bool = False,
        margin_mode: bool = False,
    ) -> None:
        self.account = account
        self.ports = ports
        self.host = host
        self.single_socket = single_socket
        self.tick_interval = tick_interval_ms / 1000  # the market's pace (the trade server's, not the EA's)
        self.timer = timer_ms / 1000  # EventSetMillisecondTimer(1); Windows rounds it up
        self.move_prices = move_prices
        self.ea = ExpertAdvisor(account, chart_symbol=chart_symbol, single_socket=single_socket,
                                symbolinfo=symbolinfo, book=book, margin_mode=margin_mode)  # fmt: skip
        # fault injection
        self.drop_replies = 0  # the next N TRADEs execute; their data reply is never pushed
        self.drop_events = 0  # the next N TRADEs execute; their trade events are never pushed
        self._delays: dict[str, deque[float]] = defaultdict(deque)
        self._errors: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
        self.received = asyncio.Event()  # set on every request (tests wait on it instead of sleeping)
        self.requests_seen = 0
        self.wedged = False
        self.passes = 0  # OnTimer passes done
        self._pass = asyncio.Condition()
        self._ctx: zmq.asyncio.Context | None = None
        self._socks: list[zmq.asyncio.Socket] = []
        self._loop_task: asyncio.Task[None] | None = None
        self._market_task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------------------- hooks

    def delay_next(self, action: str, seconds: float) -> None:
        """The next request with ``action`` runs at once, but its messages leave ``seconds`` later; until then the
        EA is stuck inside it (no other request, no price stream)."""
        self._delays[action].append(seconds)

    def errors_before(self, action: str, code: int, function: str) -> None:
        """The next request with ``action`` pushes ``ActionDoneOrError(code, function, ...)`` before its answer."""
        self._errors[action].append((code, function))

    async def next_timer(self, passes: int = 1) -> None:
        """Wait until ``passes`` more OnTimer passes (price stream, then at most one request) have completed."""
        target = self.passes + passes
        async with self._pass:
            await self._pass.wait_for(lambda: self.passes >= target)

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._ctx = zmq.asyncio.Context()
        await self._bind_all()
        self._loop_task = asyncio.create_task(self._on_timer_loop())
        self._market_task = asyncio.create_task(self._market())
        log.info("mt5 simulator listening", host=self.host, ports=self.ports.__dict__, single_socket=self.single_socket,
                 hedging=self.account.hedging)  # fmt: skip

    async def stop(self) -> None:
        for task in (self._loop_task, self._market_task):
            await _cancel(task)
        self._close_all()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    async def reload(self) -> None:
        """An EA reload (OnDeinit + OnInit): every socket closed and bound again on its port, subscriptions gone,
        queued messages dropped (``context.destroy(0)``); the account is untouched."""
        await _cancel(self._loop_task)
        self._close_all()
        self.ea.reset()
        self.wedged = False
        await self._bind_all()
        self._loop_task = asyncio.create_task(self._on_timer_loop())

    async def _bind(self, kind: int, port: int) -> zmq.asyncio.Socket:
        """BindSockets: LINGER 1000, SNDHWM 1000. A port closed a moment ago may still be taken (libzmq frees it
        on its I/O thread): bind again until it is free (the EA retries too, after 65 s)."""
        assert self._ctx is not None
        for attempt in range(300):
            sock = self._ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.SNDHWM, 1000)
            try:
                sock.bind(f"tcp://{self.host}:{port}")
            except zmq.ZMQError as e:
                sock.close(linger=0)
                if e.errno != zmq.EADDRINUSE or attempt == 299:
                    raise
                await asyncio.sleep(0.01)
                continue
            self._socks.append(sock)
            return sock
        raise AssertionError("unreachable")

    async def _bind_all(self) -> None:
        self.cmd = await self._bind(zmq.REP, self.ports.command)
        if not self.single_socket:
            self.data = await self._bind(zmq.PUSH, self.ports.data)
            self.live = await self._bind(zmq.PUSH, self.ports.live)
            self.events = await self._bind(zmq.PUSH, self.ports.events)

    def _close_all(self) -> None:
        for sock in self._socks:
            sock.close(linger=0)
        self._socks.clear()

    async def _rebind_command(self) -> None:
        """A REP socket whose reply was lost (single socket, test hook): closed and bound again."""
        self._socks.remove(self.cmd)
        self.cmd.close(linger=0)
        self.cmd = await self._bind(zmq.REP, self.ports.command)

    # ----------------------------------------------------------------------------- OnTimer

    async def _on_timer_loop(self) -> None:
        while True:
            for message in self.ea.stream_price_data():
                await self._push(self.live, message)
            async with self._pass:
                self.passes += 1
                self._pass.notify_all()
            if self.wedged:
                await asyncio.sleep(self.timer)
                continue
            if await self.cmd.poll(max(1, int(self.timer * 1000)), zmq.POLLIN):
                await self._request(await self.cmd.recv())

    async def _push(self, sock: zmq.asyncio.Socket, message: str) -> None:
        with contextlib.suppress(zmq.Again):  # InformClientSocket: send(message, nowait=true)
            await sock.send(message.encode(), zmq.NOBLOCK)

    async def _request(self, raw: bytes) -> None:
        self.requests_seen += 1
        self.received.set()
        if not raw:  # OnTimer: `if(request.size()>0)`: never answered, and REP cannot receive again
            log.warning("empty request: the command socket is wedged (as the EA's is)")
            self.wedged = True
            return
        if not self.single_socket:
            await self.cmd.send(b"OK")  # "Send response to System socket that request was received"
        out = self.ea.request(raw)
        injected = self._errors.get(out.action)
        if injected:
            code, function = injected.popleft()
            out.data.insert(0, serialize(action_done_or_error(code, function, error_desc(code))))
        delays = self._delays.get(out.action)
        if delays:
            await asyncio.sleep(delays.popleft())
        drop_reply = drop_events = False
        if out.action == "TRADE" and self.drop_replies:
            self.drop_replies, drop_reply = self.drop_replies - 1, True
            print("mt5-sim: TRADE executed, reply withheld (test hook)", flush=True)
        if out.action == "TRADE" and self.drop_events:
            self.drop_events, drop_events = self.drop_events - 1, True
        if self.single_socket:
            if drop_reply or not out.data:  # a reply lost in transit: a fresh REP socket serves what follows
                await self._rebind_command()
            else:
                await self.cmd.send(out.data[0].encode())  # later sends fail (REP state): lost
            return
        if not drop_reply:
            for message in out.data:
                await self._push(self.data, message)
        if not drop_events:
            for message in out.events:
                await self._push(self.events, message)

    async def _market(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            if self.move_prices:
                self.account.step()


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
    p.add_argument("--single-socket", action="store_true", help="the single-socket variant (ejtraderMT's REP)")
    p.add_argument("--hedging", action="store_true", help="a hedging account (default: netting)")
    p.add_argument("--balance", type=Decimal, default=Decimal(100000))
    p.add_argument("--currency", default="USD")
    p.add_argument("--leverage", type=Decimal, default=Decimal(100))
    p.add_argument("--commission-per-lot", type=Decimal, default=Decimal("3.5"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ticket-base", type=int, default=100_000_001)
    p.add_argument("--tick-interval-ms", type=int, default=100)
    p.add_argument("--chart-symbol", default="EURUSD", help="the chart the EA is attached to (its _Digits)")
    p.add_argument("--server-utc-offset-s", type=int, default=7200, help="the trade server's clock, UTC+N seconds")
    p.add_argument("--pending-retcode", type=int, default=10008, choices=(10008, 10009),
                   help="the retcode of a placed pending order (trade servers answer PLACED or DONE)")  # fmt: skip
    p.add_argument("--symbolinfo", choices=("none", "extension", "ejtrader"), default="none",
                   help="answer SYMBOLINFO (the stock EA does not): ordermesh's flat shape, ejtraderMT's")  # fmt: skip
    p.add_argument("--book", action="store_true", help="answer BOOK (an ordermesh extension; the stock EA does not)")
    p.add_argument("--account-margin-mode", action="store_true",
                   help="ACCOUNT also says the margin mode (an extension; the stock EA does not)")  # fmt: skip
    hooks = {"--drop-trade-replies": "execute the next N TRADE requests but never push their reply",
             "--drop-trade-events": "execute the next N TRADE requests but never push their trade event",
             "--timeout-but-execute": "execute the next N deals/placements but answer 10012 (timeout)"}  # fmt: skip
    for flag, text in hooks.items():
        p.add_argument(flag, type=int, default=0, metavar="N", help=f"test hook: {text}")


def run(args: Any) -> int:
    import signal

    account = Account(
        hedging=args.hedging, currency=args.currency, balance=args.balance, leverage=args.leverage,
        commission_per_lot=args.commission_per_lot, seed=args.seed, ticket_base=args.ticket_base,
        pending_retcode=args.pending_retcode, server_utc_offset_s=args.server_utc_offset_s,
    )  # fmt: skip
    account.timeout_but_execute = args.timeout_but_execute
    ports = Ports(args.command_port, args.data_port, args.live_port, args.events_port)

    async def serve() -> None:
        sim = BridgeSimulator(account, ports, host=args.host, single_socket=args.single_socket,
                              tick_interval_ms=args.tick_interval_ms, chart_symbol=args.chart_symbol,
                              symbolinfo=args.symbolinfo, book=args.book,
                              margin_mode=args.account_margin_mode)  # fmt: skip
        sim.drop_replies, sim.drop_events = args.drop_trade_replies, args.drop_trade_events
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
