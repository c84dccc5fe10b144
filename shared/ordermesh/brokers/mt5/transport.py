"""The ZeroMQ link to the MQL5-JSON-API expert advisor: request/reply without request ids, done safely.

The EA (Experts/JsonAPI.mq5) binds four sockets: command REP (it answers ``OK`` the moment it has the request,
RequestHandler), data PUSH (the JSON answer), live PUSH (ticks, StreamPriceData) and stream PUSH (trade events,
OnTradeTransaction). Its PUSH sends are non-blocking (InformClientSocket): whatever it sends while our PULL socket
is not connected is lost. Its answers carry no request id. Hence:

* :meth:`EALink.open` returns only once the data socket's handshake with the EA has completed (socket monitor),
  so the first answer cannot be pushed into the void;
* one request is in flight at a time (a lock), and a request is answered by the first data message of the shape
  that action ends with (:func:`final_for`); error messages the EA pushes before it (CheckError: 4301 before a
  TRADE reply, 5040 inside POSITIONS) are kept with the answer, never taken for it;
* a request that times out leaves its answer possibly still to come (an EA busy in a slow trade, a lost reply):
  the REQ socket is recreated (a REQ that did not get its ``OK`` cannot send again) but the data socket is kept,
  and before the next request the link **resynchronises**: it sends a HISTORY DATA request for a symbol that
  cannot exist, whose answer echoes that symbol (HistoryInfo.mqh, HistoryInfo, actionType DATA), and reads up to
  that echo (matched on its bytes: for an unknown symbol the EA writes ``{,"symbol":...}``, not valid JSON).
  The EA handles requests one at a time, so everything before the echo answers earlier requests: a
  late TRADE reply is handed to ``on_late_trade`` (it settles an unknown outcome), anything else is dropped.
  The echo also proves that every earlier request has finished at the EA;
* the single-socket variant (one REP socket that answers with the JSON) has no data socket: a REQ socket that
  timed out is replaced, and ZeroMQ drops a reply addressed to the closed one, so no reply can be misread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from ordermesh.brokers.model import BrokerConnectionError
from ordermesh.brokers.mt5.protocol import _json
from ordermesh.platform import metrics

log = structlog.get_logger("mt5")

SYNC_PREFIX = "OMSYNC"  # no broker names a symbol like this; the EA echoes it back


@dataclass
class Answer:
    """The message that ends a request, with the error messages the EA pushed before it."""

    reply: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)


def decode(raw: bytes) -> dict[str, Any]:
    """One EA message as a dict. The EA sends an empty message for a HISTORY TRADES request on an account with
    no deals (an untouched CJAVal serializes to nothing), so ``b""`` is ``{}``."""
    if not raw.strip():
        return {}
    try:
        value = _json.decode(raw)
    except msgspec.DecodeError:
        return {"error": True, "lastError": "undecodable", "description": raw[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {"error": True, "lastError": "not_an_object"}


def is_error(msg: dict[str, Any]) -> bool:
    """An ActionDoneOrError message that reports a failure (``lastError`` other than 0)."""
    return "lastError" in msg and str(msg.get("lastError")) != "0"


#: The EA function whose ActionDoneOrError message ends each action that answers that way.
_ACTION_FUNCTION = {"CONFIG": "ScriptConfiguration", "RESET": "ResetSubscriptionsAndIndicators"}
#: The key whose presence marks each listing's answer.
_ACTION_KEY = {
    "ACCOUNT": "balance",
    "BALANCE": "balance",
    "POSITIONS": "positions",
    "ORDERS": "orders",
    "TRADE": "retcode",
}


def final_for(payload: dict[str, Any]) -> Callable[[dict[str, Any], bool], bool]:
    """A test for "this message ends ``payload``'s request" (``empty`` tells an empty message)."""
    action = str(payload.get("action"))
    kind = str(payload.get("actionType") or "")

    def wrong_action(msg: dict[str, Any]) -> bool:  # RequestHandler / a module that does not know the action
        return str(msg.get("lastError")) == "65538"

    if action == "HISTORY" and kind == "TRADES":
        # {"trades": [...]} or, with no deals at all, an empty message
        return lambda msg, empty: empty or "trades" in msg or wrong_action(msg)
    if action == "HISTORY":
        symbol = payload.get("symbol")
        return lambda msg, empty: msg.get("symbol") == symbol or wrong_action(msg)
    if action == "ORDERS":
        # {"error": false, "orders": [...]}; an empty message when HistorySelect failed (nothing was set)
        return lambda msg, empty: "orders" in msg or empty or wrong_action(msg)
    if action in _ACTION_FUNCTION:
        fn = _ACTION_FUNCTION[action]
        return lambda msg, empty: msg.get("function") == fn or wrong_action(msg)
    if action in _ACTION_KEY:
        key = _ACTION_KEY[action]
        return lambda msg, empty: key in msg or (wrong_action(msg) and action != "TRADE")
    # an extension (SYMBOLINFO, BOOK) answers with one message: its answer, its error, or the stock EA's
    # "wrong action" (RequestHandler)
    return lambda msg, empty: True


async def _within(aw: Awaitable[Any], seconds: float) -> Any:
    """``await aw`` for at most ``seconds`` (TimeoutError). ``asyncio.timeout`` rather than ``wait_for``: in
    Python 3.11 ``wait_for`` can swallow a cancellation that races a completing future, and a task that ignores
    its cancellation never stops (a closed adapter's heartbeat went on)."""
    async with asyncio.timeout(seconds):
        return await aw


class _Monitored:
    """A PULL/REQ socket whose handshakes with the EA are watched: ``ready`` is set while connected, and
    ``generation`` counts handshakes (an EA reload or restart shows as a new generation)."""

    def __init__(self, ctx: zmq.asyncio.Context, kind: int, url: str, name: str) -> None:
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.name = name
        self.ready = asyncio.Event()
        self.generation = 0
        self._mon = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self._task = asyncio.create_task(self._watch())
        self.sock.connect(url)

    async def _watch(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
            while True:
                event = parse_monitor_message(await self._mon.recv_multipart())
                if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.generation += 1
                    self.ready.set()
                elif event["event"] == zmq.EVENT_DISCONNECTED:
                    self.ready.clear()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disable_monitor()
        self._mon.close(0)
        self.sock.close(0)


class EALink:
    """Requests to one EA, one at a time, with no stale answer ever taken for a fresh one."""

    def __init__(
        self,
        broker_id: str,
        host: str,
        ports: tuple[int, int, int, int],
        *,
        single_socket: bool,
        timeout_s: float,
        on_late_trade: Callable[[Any, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.broker_id = broker_id
        self.host = host
        self.ports = ports
        self.single_socket = single_socket
        self.timeout = timeout_s
        self.on_late_trade = on_late_trade
        self._late_tag: Any = None  # whose TRADE timed out: a late TRADE reply is that request's answer
        self.log = log.bind(broker_id=broker_id)
        self.ctx: zmq.asyncio.Context | None = None
        self._cmd: _Monitored | None = None
        self._data: _Monitored | None = None
        self._lock = asyncio.Lock()
        self._desynced = False
        self._nonce = itertools.count(1)
        self.trades_sent = 0  # TRADE requests sent (a reader of several listings can tell none came in between)

    def url(self, port: int) -> str:
        return f"tcp://{self.host}:{port}"

    def monitored(self, kind: int, port: int, name: str) -> _Monitored:
        assert self.ctx is not None
        return _Monitored(self.ctx, kind, self.url(port), name)

    @property
    def data_generation(self) -> int:
        return self._data.generation if self._data is not None else (self._cmd.generation if self._cmd else 0)

    async def open(self) -> None:
        """Create the sockets. Returns at once; :meth:`request` waits for the handshakes it needs."""
        if self.ctx is not None:
            return
        self.ctx = zmq.asyncio.Context()
        self._cmd = self.monitored(zmq.REQ, self.ports[0], "command")
        if not self.single_socket:
            self._data = self.monitored(zmq.PULL, self.ports[1], "data")

    async def close(self) -> None:
        for m in (self._cmd, self._data):
            if m is not None:
                await m.close()
        self._cmd = self._data = None
        if self.ctx is not None:
            self.ctx.destroy(linger=0)
            self.ctx = None

    async def _replace_cmd(self) -> None:
        if self._cmd is not None:
            await self._cmd.close()
        self._cmd = self.monitored(zmq.REQ, self.ports[0], "command")

    async def _connected(self) -> None:
        """Wait (bounded) until the EA holds our data socket: an answer pushed before that is lost."""
        waits = [m.ready.wait() for m in (self._cmd, self._data) if m is not None]
        try:
            await _within(asyncio.gather(*waits), self.timeout)
        except TimeoutError:
            raise BrokerConnectionError("MT5 EA not reachable (no ZeroMQ handshake)") from None

    async def request(self, payload: dict[str, Any], tag: Any = None) -> Answer:
        """Send one request and return its answer. Raises BrokerConnectionError when the EA does not answer in
        time; the answer may then still come, and is dealt with by the next resynchronisation (a late TRADE
        reply is handed to ``on_late_trade`` with the ``tag`` of the request that timed out)."""
        if not payload or not payload.get("action"):
            raise ValueError("never send an empty request: it wedges the EA's command socket")
        if payload.get("action") == "TRADE" and not payload.get("symbol"):
            raise ValueError("a TRADE request needs its symbol")
        async with self._lock:
            if self.ctx is None:
                raise BrokerConnectionError("not connected")
            await self._connected()
            if not self.single_socket:
                await self._drain_strays()
                if self._desynced:
                    await self._resync()
            started = time.perf_counter()
            if payload["action"] == "TRADE":
                self.trades_sent += 1
            answer = await self._exchange(payload, tag)
            metrics.MT5_REQUEST_SECONDS.labels(self.broker_id, str(payload["action"])).observe(
                time.perf_counter() - started
            )
            return answer

    async def _exchange(self, payload: dict[str, Any], tag: Any) -> Answer:
        assert self._cmd is not None
        try:
            await self._cmd.sock.send(msgspec.json.encode(payload))
            first = await _within(self._cmd.sock.recv(), self.timeout)
            if self.single_socket:
                return Answer(decode(first))
            return await self._read_until(final_for(payload), time.monotonic() + self.timeout)
        except (TimeoutError, zmq.ZMQError) as exc:
            await self._replace_cmd()
            self._desynced = not self.single_socket
            if payload.get("action") == "TRADE":
                self._late_tag = tag
            raise BrokerConnectionError(f"MT5 EA did not answer {payload['action']} in time") from exc

    async def _read_until(self, final: Callable[[dict[str, Any], bool], bool], deadline: float) -> Answer:
        assert self._data is not None
        errors: list[dict[str, Any]] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            raw = await _within(self._data.sock.recv(), left)
            msg = decode(raw)
            if final(msg, not raw.strip()):
                return Answer(msg, errors)
            errors.append(msg)
            if not is_error(msg):
                self.log.warning("unexpected EA message before the answer", message=msg)

    async def _drain_strays(self) -> None:
        """A message waiting before we ask anything answers nothing we are waiting for: resynchronise."""
        assert self._data is not None
        with contextlib.suppress(zmq.Again):
            raw = await self._data.sock.recv(zmq.NOBLOCK)
            await self._stale(decode(raw))
            self._desynced = True

    async def _resync(self) -> None:
        nonce = f"{SYNC_PREFIX}{next(self._nonce)}{time.time_ns() % 1_000_000}"
        probe = {
            "action": "HISTORY",
            "actionType": "DATA",
            "symbol": nonce,
            "chartTF": "M1",
            "fromDate": int(time.time()) - 60,
        }
        assert self._cmd is not None and self._data is not None
        try:
            await self._cmd.sock.send(msgspec.json.encode(probe))
            await _within(self._cmd.sock.recv(), self.timeout)
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                raw = await _within(self._data.sock.recv(), left)
                # the echo of a symbol with no data is not valid JSON: CJAVal::Serialize writes the comma of
                # "symbol" after the undefined "data" (``{,"symbol":...}``), so it is recognised by its bytes
                if f'"symbol":"{nonce}"'.encode() in raw:
                    break
                await self._stale(decode(raw))
        except (TimeoutError, zmq.ZMQError) as exc:
            await self._replace_cmd()
            raise BrokerConnectionError("MT5 EA did not answer the resynchronisation in time") from exc
        self._desynced = False
        self._late_tag = None  # every earlier request is answered or lost for good
        metrics.MT5_RESYNCS.labels(self.broker_id).inc()
        self.log.info("resynchronised with the EA")

    async def _stale(self, msg: dict[str, Any]) -> None:
        if "retcode" in msg and self.on_late_trade is not None and self._late_tag is not None:
            self.log.warning("late TRADE reply after a timeout", reply=msg)
            tag, self._late_tag = self._late_tag, None
            await self.on_late_trade(tag, msg)
        else:
            self.log.warning("stale EA message dropped", message=msg)
