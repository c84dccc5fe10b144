"""The MT5 bridge simulator against the stock MQL5-JSON-API EA's source, over real ZeroMQ sockets: a raw REQ + PULL
client and byte-exact answers. Each test names the EA (or CTrade) function whose behaviour it pins; the table
of behaviours and sources is tools/mt5sim's docstrings (and docs/architecture.md)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal as D
from typing import Any

import pytest
import zmq
import zmq.asyncio

from tools.mt5sim.engine import Account, int32
from tools.mt5sim.server import BridgeSimulator, Ports, add_arguments

TIMEOUT = 3.0
RESERVED = {4222, 15555, 15556, 15557, 15558}
BUY = {"action": "TRADE", "actionType": "ORDER_TYPE_BUY", "symbol": "EURUSD", "volume": 0.1}
SELL = {"action": "TRADE", "actionType": "ORDER_TYPE_SELL", "symbol": "EURUSD", "volume": 0.1}
PROBE = {"action": "TRADE", "actionType": "ORDER_CANCEL", "symbol": "EURUSD", "id": 1}  # answered 10013: one event
UNSENT = b'"retcode":0,"desription":"TRADE_RETCODE_UNKNOWN=0","order":0,"volume":0.00000,"price":0.00000,'


def free_ports(n: int = 4) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RESERVED and port not in ports:
            ports.append(port)
    return ports


def done(code: int, description: str, function: str) -> bytes:
    """ActionDoneOrError's message."""
    error = "true" if code else "false"
    return f'{{"error":{error},"lastError":"{code}","description":"{description}","function":"{function}"}}'.encode()


WRONG_ACTION = done(65538, "ERR_WRONG_ACTION", "RequestHandler")


def trade(action_type: str, **fields: Any) -> dict[str, Any]:
    return {"action": "TRADE", "actionType": action_type, **fields}


def reply(error: bool, retcode: int, name: str, order: int, volume: str, price: str, bid: str, ask: str) -> bytes:
    return (
        f'{{"error":{str(error).lower()},"retcode":{retcode},"desription":"{name}","order":{order},"volume":{volume},'
        f'"price":{price},"bid":{bid},"ask":{ask},"function":"TradingModule"}}'
    ).encode()


class Client:
    """What a client of the EA has: a REQ socket and three PULL sockets, all connecting."""

    def __init__(self, ports: Ports, *, pulls: bool = True) -> None:
        self.ports = ports
        self.ctx = zmq.asyncio.Context()
        self.req = self.ctx.socket(zmq.REQ)
        for opt in (zmq.REQ_RELAXED, zmq.REQ_CORRELATE):
            self.req.setsockopt(opt, 1)
        self.req.setsockopt(zmq.LINGER, 0)
        self.req.connect(f"tcp://127.0.0.1:{ports.command}")
        if pulls:
            self.connect_pulls()

    def connect_pulls(self) -> None:
        for name, port in (("data", self.ports.data), ("live", self.ports.live), ("events", self.ports.events)):
            sock = self.ctx.socket(zmq.PULL)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://127.0.0.1:{port}")
            setattr(self, name, sock)

    async def send(self, request: dict[str, Any] | bytes) -> bytes:
        """One request; the REP answer."""
        await self.req.send(request if isinstance(request, bytes) else json.dumps(request).encode())
        return await self.recv(self.req)

    async def recv(self, sock: zmq.asyncio.Socket) -> bytes:
        return await asyncio.wait_for(sock.recv(), TIMEOUT)

    async def ask(self, request: dict[str, Any] | bytes) -> bytes:
        assert await self.send(request) == b"OK"
        return await self.recv(self.data)

    async def ask_json(self, request: dict[str, Any]) -> Any:
        return json.loads(await self.ask(request))

    async def quiet(self, sock: zmq.asyncio.Socket, ms: int = 150) -> bool:
        return not await sock.poll(ms)

    async def drain(self, sock: zmq.asyncio.Socket) -> None:
        while not await self.quiet(sock, 100):
            await sock.recv()

    async def ready(self) -> None:
        """PUSH sockets drop what they send before a PULL peer is connected: probe until both deliver."""
        deadline = time.monotonic() + 10
        for sock, probe in ((self.data, {"action": "ACCOUNT"}), (self.events, PROBE)):
            while True:
                assert time.monotonic() < deadline, "the simulator's PUSH sockets never reached the client"
                assert await self.send(probe) == b"OK"
                if sock is self.events:
                    await self.recv(self.data)  # the probe's own reply
                if not await self.quiet(sock, 200):
                    break
            await self.drain(sock)
        await self.drain(self.data)

    def close(self) -> None:
        self.ctx.destroy(linger=0)


Make = Callable[..., Awaitable[tuple[BridgeSimulator, Client]]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    started: list[tuple[BridgeSimulator, Client]] = []

    async def _make(account: Account | None = None, **options: Any) -> tuple[BridgeSimulator, Client]:
        ports = Ports(*free_ports())
        sim = BridgeSimulator(account or Account(), ports, tick_interval_ms=20, timer_ms=2, move_prices=False,
                              **options)  # fmt: skip
        await sim.start()
        client = Client(ports)
        started.append((sim, client))
        if not options.get("single_socket"):
            await client.ready()
        return sim, client

    yield _make
    for sim, client in started:
        client.close()
        await sim.stop()


async def live_ready(sim: BridgeSimulator, c: Client) -> None:
    """Wait until the live PUSH reaches the client (a GBPUSD subscription and fresh prices), then RESET."""
    await c.ask({"action": "CONFIG", "symbol": "GBPUSD", "chartTF": "TICK"})
    for n in range(200):
        sim.account.set_price("GBPUSD", D("1.20000") + D("0.00001") * n, D("1.20010") + D("0.00001") * n)
        await sim.next_timer(2)
        if not await c.quiet(c.live, 20):
            break
    await c.ask({"action": "RESET"})
    await c.drain(c.live)


async def event(c: Client) -> dict[str, Any]:
    return json.loads(await c.recv(c.events))


async def next_event_is_probe(c: Client) -> None:
    """Proves no trade event came before: the next one is the probe's."""
    await c.ask(PROBE)
    assert (await event(c))["request"]["action"] == "TRADE_ACTION_REMOVE"


# ----------------------------------------------------------------------------- RequestHandler, InformClientSocket


async def test_ok_first_then_deserialization_error_then_wrong_action(make: Make) -> None:
    """RequestHandler: 'OK' on the REP socket; a request CJAVal cannot read pushes 65537, then 65538 for action ""."""
    sim, c = await make()
    assert await c.send(b"not json") == b"OK"
    assert await c.recv(c.data) == (
        b'{"error":true,"lastError":"65537","description":"ERR_DESERIALIZATION","function":"RequestHandler"}'
    )
    assert await c.recv(c.data) == WRONG_ACTION
    assert await c.ask({"action": "NOPE"}) == WRONG_ACTION
    assert await c.ask({"action": "SYMBOLINFO", "symbol": "EURUSD"}) == WRONG_ACTION  # not a stock action
    assert await c.ask({"action": "BOOK", "symbol": "EURUSD"}) == WRONG_ACTION
    # CJAVal::Deserialize: a truncated object still parses (it stops at the terminating NUL)
    assert (await c.ask(b'{"action":"BALANCE"')).startswith(b'{"balance":100000.00000,')
    assert sim.requests_seen >= 6 and sim.received.is_set()


async def test_a_reply_sent_before_the_pull_peer_connects_is_lost() -> None:
    """InformClientSocket sends non-blocking: with no PULL peer the PUSH socket drops the message."""
    ports = Ports(*free_ports())
    sim = BridgeSimulator(Account(), ports, timer_ms=2, move_prices=False)
    await sim.start()
    c = Client(ports, pulls=False)
    try:
        assert sim.data.getsockopt(zmq.SNDHWM) == 1000 and sim.data.getsockopt(zmq.LINGER) == 1000
        assert await c.send({"action": "BALANCE"}) == b"OK"
        await sim.next_timer(2)  # the BALANCE answer was pushed to nobody
        c.connect_pulls()
        while True:
            assert await c.send({"action": "ACCOUNT"}) == b"OK"
            if not await c.quiet(c.data, 200):
                break
        assert (await c.data.recv()).startswith(b'{"error":false,"broker":')  # never the BALANCE answer
    finally:
        c.close()
        await sim.stop()


async def test_empty_request_wedges_the_command_socket(make: Make) -> None:
    """OnTimer handles a request only `if(request.size()>0)`: an empty one is never answered."""
    sim, c = await make()
    await c.req.send(b"")
    assert await c.quiet(c.req, 300)
    assert sim.wedged


# ----------------------------------------------------------------------------- CJAVal::Serialize


async def test_account_and_balance_doubles_have_five_decimals(make: Make) -> None:
    """GetAccountInfo / GetBalanceInfo: DoubleToString(x, 5); TerminalInfoInteger is an int (1, not true)."""
    _sim, c = await make(Account(balance=D("12345.678901")))
    assert await c.ask({"action": "ACCOUNT"}) == (
        b'{"error":false,"broker":"ordermesh simulator","currency":"USD","server":"mt5-sim","trading_allowed":1,'
        b'"bot_trading":1,"balance":12345.67890,"equity":12345.67890,"margin":0.00000,"margin_free":12345.67890,'
        b'"margin_level":0.00000}'
    )
    assert await c.ask({"action": "BALANCE"}) == (
        b'{"balance":12345.67890,"equity":12345.67890,"margin":0.00000,"margin_free":12345.67890}'
    )


async def test_empty_listings_as_the_ea_serializes_them(make: Make) -> None:
    """GetPositions adds an undefined element and no "error"; GetOrders sets "error" first; HistoryInfo TRADES
    never touches ``trades`` when there is no deal, so the message is empty (no deposit: balance 0)."""
    _sim, c = await make(Account(balance=D(0)))
    assert await c.ask({"action": "POSITIONS"}) == b'{"positions":[]}'
    assert await c.ask({"action": "ORDERS"}) == b'{"error":false,"orders":[]}'
    assert await c.ask({"action": "HISTORY", "actionType": "TRADES"}) == b""


async def test_history_trades_rows_start_with_the_deposit(make: Make) -> None:
    """HistoryInfo TRADES: CDealInfo rows (TypeDescription "Buy type", entry as a number), fromDate ignored,
    no order/position/commission; the symbol of a balance deal is "" -> null; times are server time."""
    account = Account(server_utc_offset_s=7200)
    _sim, c = await make(account)
    await c.ask(BUY)
    await c.ask(SELL)
    raw = await c.ask({"action": "HISTORY", "actionType": "TRADES", "fromDate": 4_000_000_000})
    deposit = account.deals[0]
    assert raw.startswith(
        f'{{"trades":[{{"ticket":{deposit.ticket},"time":{deposit.time},"price":0.00000,"volume":0.00000,'
        f'"symbol":null,"type":"Balance type","entry":0,"profit":100000.00000}},'.encode()
    )
    rows = json.loads(raw)["trades"]
    assert [list(r) for r in rows] == [["ticket", "time", "price", "volume", "symbol", "type", "entry", "profit"]] * 3
    assert [(r["type"], r["entry"]) for r in rows[1:]] == [("Buy type", 0), ("Sell type", 1)]
    assert abs(rows[1]["time"] - (time.time() + 7200)) < 5
    assert b'"price":1.08505,"volume":0.10000' in raw and b'"price":1.08495,"volume":0.10000' in raw


async def test_history_data_ticks_and_bars(make: Make) -> None:
    """HistoryInfo DATA: CopyTicksRange(1000*from, 1000*to) / CopyRates rows; an unknown symbol's -1 leaves
    ``data`` undefined, which CJAVal omits while still writing the next member's comma."""
    account = Account(server_utc_offset_s=0)
    _sim, c = await make(account)
    account.set_price("EURUSD", D("1.08600"), D("1.08610"))
    tick = account.tick("EURUSD")
    assert tick is not None
    request = {"action": "HISTORY", "actionType": "DATA", "symbol": "EURUSD", "chartTF": "TICK",
               "fromDate": tick.time_msc // 1000, "toDate": tick.time_msc // 1000 + 1}  # fmt: skip
    raw = await c.ask(request)
    assert raw.endswith(f'[{tick.time_msc},1.08600,1.08610]],"symbol":"EURUSD","timeframe":"TICK"}}'.encode())
    bars = await c.ask_json({**request, "chartTF": "M1", "fromDate": 0})
    minute = tick.time_msc // 60000 * 60
    assert bars["data"][-1][0] == minute and bars["data"][-1][4] == 1.086  # time, ..., close
    assert len(bars["data"][-1]) == 7
    assert await c.ask({**request, "symbol": "NOPE"}) == b'{,"symbol":"NOPE","timeframe":"TICK"}'
    assert await c.ask({**request, "fromDate": 1, "toDate": 2}) == b'{"data":[],"symbol":"EURUSD","timeframe":"TICK"}'


# ----------------------------------------------------------------------------- TradingModule, OrderDoneOrError


async def test_trade_reply_has_an_int32_order_and_no_deal(make: Make) -> None:
    """OrderDoneOrError: `(int) trade.ResultOrder()`, the deal line commented out; OnTradeTransaction's "deal" is
    the order ticket; POSITIONS ids are 64-bit integers, ORDERS ids 64-bit strings."""
    ticket = 2**31 + 5
    _sim, c = await make(Account(ticket_base=ticket))
    await c.ask(PROBE)  # answered by the server: request_id 2 (ready() sent the first)
    await event(c)
    raw = await c.ask({**BUY, "comment": "a/b"})
    assert raw == reply(False, 10009, "TRADE_RETCODE_DONE", ticket - 2**32, "0.10000", "1.08505", "1.08495", "1.08505")
    raw_event = await c.recv(c.events)
    assert raw_event == (
        b'{"request":{"action":"TRADE_ACTION_DEAL","order":0,"symbol":"EURUSD","volume":0.10000,"price":1.08505,'
        b'"stoplimit":0.00000,"sl":0.00000,"tp":0.00000,"deviation":10,"type":"ORDER_TYPE_BUY",'
        b'"type_filling":"ORDER_FILLING_FOK","type_time":"ORDER_TIME_GTC","expiration":0,"comment":"a\\/b",'
        b'"position":0,"position_by":0},"result":{"retcode":10009,"result":"TRADE_RETCODE_DONE","deal":-2147483643,'
        b'"order":-2147483643,"volume":0.10000,"price":1.08505,"comment":"Request executed","request_id":3,'
        b'"retcode_external":0}}'
    )
    positions = await c.ask({"action": "POSITIONS"})
    assert positions.startswith(f'{{"error":false,"positions":[{{"id":{ticket},"magic":0,'.encode())
    await c.ask(trade("ORDER_TYPE_BUY_LIMIT", symbol="EURUSD", volume=0.1, price=1.08))
    orders = json.loads(await c.ask({"action": "ORDERS"}))
    assert orders["orders"][0]["id"] == str(ticket + 1)


async def test_unknown_symbol_pushes_4301_before_the_reply(make: Make) -> None:
    """TradingModule: SymbolInfoString + CheckError first; CTrade::PositionOpen then fails in OrderTypeCheck
    without sending, so the reply carries the zeroed result and no trade event follows."""
    _sim, c = await make()
    assert await c.send({**BUY, "symbol": "NOPE"}) == b"OK"
    assert await c.recv(c.data) == done(4301, "Unknown symbol", "TradingModule")
    assert UNSENT in await c.recv(c.data)
    await next_event_is_probe(c)


async def test_unknown_action_type_pushes_65538_then_a_failed_reply(make: Make) -> None:
    _sim, c = await make()
    assert await c.send(trade("ORDER_TYPE_BUY_STOP_LIMIT", symbol="EURUSD", volume=0.1)) == b"OK"
    assert await c.recv(c.data) == WRONG_ACTION.replace(b"RequestHandler", b"TradingModule")
    assert (await c.recv(c.data)).startswith(b'{"error":true,' + UNSENT)


@pytest.mark.parametrize("base", [2**31 + 10, 2**32 + 7])
async def test_the_id_is_truncated_to_32_bits(make: Make, base: int) -> None:
    """`int idNimber=dataObject["id"].ToInt()`: a ticket >= 2**31 cannot be addressed (sign-extended or cut)."""
    _sim, c = await make(Account(ticket_base=base))
    await c.ask(BUY)
    for wire_id in (base, int32(base)):
        raw = await c.ask(trade("POSITION_CLOSE_ID", symbol="EURUSD", id=wire_id))
        assert raw.startswith(b'{"error":true,' + UNSENT)  # PositionSelectByTicket found nothing
    assert len((await c.ask_json({"action": "POSITIONS"}))["positions"]) == 1


async def test_position_partial_is_hedging_only(make: Make) -> None:
    """CTrade::PositionClosePartial: `if(!IsHedging()) return(false);` before anything is sent."""
    _sim, c = await make(Account(ticket_base=1000))
    await c.ask({**BUY, "volume": 0.2})
    await event(c)
    raw = await c.ask(trade("POSITION_PARTIAL", symbol="EURUSD", id=1000, volume=0.1))
    assert raw.startswith(b'{"error":true,' + UNSENT)
    assert (await c.ask_json({"action": "POSITIONS"}))["positions"][0]["volume"] == 0.2
    await next_event_is_probe(c)

    _sim, c = await make(Account(ticket_base=1000, hedging=True))
    await c.ask({**BUY, "volume": 0.2})
    raw = await c.ask(trade("POSITION_PARTIAL", symbol="EURUSD", id=1000, volume=0.5))  # capped at the position
    assert raw == reply(False, 10009, "TRADE_RETCODE_DONE", 1001, "0.20000", "1.08495", "1.08495", "1.08505")
    assert await c.ask({"action": "POSITIONS"}) == b'{"positions":[]}'


async def test_position_modify_sets_and_a_bare_modify_wipes_stops(make: Make) -> None:
    """PositionModify(ticket, SL, TP) with SL/TP read by ToDbl: missing keys are 0."""
    _sim, c = await make(Account(ticket_base=500))
    await c.ask(BUY)
    await event(c)
    raw = await c.ask(trade("POSITION_MODIFY", symbol="EURUSD", id=500, stoploss=1.08, takeprofit=1.09))
    assert raw == reply(False, 10009, "TRADE_RETCODE_DONE", 0, "0.00000", "0.00000", "0.00000", "0.00000")
    request = (await event(c))["request"]
    assert [request[k] for k in ("action", "position", "sl", "tp")] == ["TRADE_ACTION_SLTP", 500, 1.08, 1.09]
    row = (await c.ask_json({"action": "POSITIONS"}))["positions"][0]
    assert (row["stoploss"], row["takeprofit"]) == (1.08, 1.09)
    await c.ask(trade("POSITION_MODIFY", id=500))  # no symbol: 4301 first, then the modify itself
    assert (await c.recv(c.data)).startswith(b'{"error":false,"retcode":10009')
    row = (await c.ask_json({"action": "POSITIONS"}))["positions"][0]
    assert (row["stoploss"], row["takeprofit"]) == (0, 0)


async def test_order_modify_without_stops_wipes_them_and_prices_use_chart_digits(make: Make) -> None:
    """ORDER_MODIFY: OrderModify(ticket, NormalizeDouble(price, _Digits), SL, TP, ORDER_TIME_GTC, expiration);
    _Digits is the chart's, here USDJPY's 3, so a EURUSD price loses its last decimals."""
    _sim, c = await make(Account(ticket_base=700), chart_symbol="USDJPY")
    await c.ask(trade("ORDER_TYPE_BUY_LIMIT", symbol="EURUSD", volume=0.1, price=1.08123, stoploss=1.07,
                      takeprofit=1.09, expiration=4_000_000_000))  # fmt: skip
    placed = await event(c)
    assert placed["request"]["price"] == 1.081 and placed["request"]["type_time"] == "ORDER_TIME_GTC"
    assert placed["request"]["expiration"] == int32(4_000_000_000)
    raw = await c.ask(trade("ORDER_MODIFY", symbol="EURUSD", id=700, price=1.0795))
    assert raw == reply(False, 10009, "TRADE_RETCODE_DONE", 700, "0.00000", "0.00000", "0.00000", "0.00000")
    request = (await event(c))["request"]
    assert (request["action"], request["order"], request["symbol"]) == ("TRADE_ACTION_MODIFY", 700, None)
    row = (await c.ask_json({"action": "ORDERS"}))["orders"][0]
    assert (row["open"], row["stoploss"], row["takeprofit"]) == (1.08, 0, 0)  # 1.0795 -> 1.080 at 3 digits


async def test_a_price_off_the_symbols_tick_is_rejected(make: Make) -> None:
    """NormalizeDouble uses the chart's digits (EURUSD: 5), so a USDJPY price keeps digits the symbol lacks (the
    server's 10015 is a guess)."""
    _sim, c = await make()
    raw = await c.ask(trade("ORDER_TYPE_BUY_LIMIT", symbol="USDJPY", volume=0.1, price=150.1234))
    assert raw.startswith(b'{"error":true,"retcode":10015,"desription":"TRADE_RETCODE_INVALID_PRICE"')


@pytest.mark.parametrize(("option", "retcode", "name"), [(10008, 10008, "PLACED"), (10009, 10009, "DONE")])
async def test_pending_retcode_depends_on_the_server(make: Make, option: int, retcode: int, name: str) -> None:
    _sim, c = await make(Account(ticket_base=300, pending_retcode=option))
    raw = await c.ask(trade("ORDER_TYPE_SELL_STOP", symbol="EURUSD", volume=0.1, price=1.08))
    assert raw == reply(False, retcode, f"TRADE_RETCODE_{name}", 300, "0.10000", "0.00000", "0.00000", "0.00000")


async def test_pending_fills_and_stops_happen_without_trade_events(make: Make) -> None:
    """Only TRADE_TRANSACTION_REQUEST is streamed: server-side fills are not requests."""
    account = Account(ticket_base=400)
    _sim, c = await make(account)
    await c.ask(trade("ORDER_TYPE_BUY_LIMIT", symbol="EURUSD", volume=0.1, price=1.08, stoploss=1.07))
    await event(c)
    account.set_price("EURUSD", D("1.07990"), D("1.08000"))  # the limit fills
    assert (await c.ask_json({"action": "POSITIONS"}))["positions"][0]["id"] == 400
    account.set_price("EURUSD", D("1.06990"), D("1.07000"))  # its SL closes it
    assert await c.ask({"action": "POSITIONS"}) == b'{"positions":[]}'
    await next_event_is_probe(c)


@pytest.mark.parametrize("hedging", [False, True], ids=["netting", "hedging"])
async def test_a_partly_filled_pending_order_stays_listed_with_its_initial_volume(make: Make, hedging: bool) -> None:
    """GetOrders lists ORDER_VOLUME_INITIAL: a pending order the server filled in part looks unchanged in ORDERS;
    only HISTORY TRADES and POSITIONS show the deal, and no trade event follows. The rest fills into the same
    position (hedging: the order's deals share the position its first deal opened)."""
    account = Account(ticket_base=500, hedging=hedging)
    _sim, c = await make(account)
    await c.ask(trade("ORDER_TYPE_BUY_LIMIT", symbol="EURUSD", volume=0.3, price=1.08))
    await event(c)
    account.fill_partly(500, "0.1")
    (row,) = (await c.ask_json({"action": "ORDERS"}))["orders"]
    assert (row["id"], row["volume"]) == ("500", 0.3)
    deals = (await c.ask_json({"action": "HISTORY", "actionType": "TRADES"}))["trades"][1:]
    assert [(d["type"], d["volume"], d["price"], d["entry"]) for d in deals] == [("Buy type", 0.1, 1.08, 0)]
    assert [(p["id"], p["volume"]) for p in (await c.ask_json({"action": "POSITIONS"}))["positions"]] == [(500, 0.1)]
    account.set_price("EURUSD", D("1.07990"), D("1.08000"))  # the rest fills
    assert await c.ask({"action": "ORDERS"}) == b'{"error":false,"orders":[]}'
    assert [(p["id"], p["volume"]) for p in (await c.ask_json({"action": "POSITIONS"}))["positions"]] == [(500, 0.3)]
    assert [d.volume for d in account.deals[1:]] == [D("0.1"), D("0.2")]
    await next_event_is_probe(c)


async def test_close_by_symbol_on_netting_reports_a_failed_send_as_no_error(make: Make) -> None:
    """CTrade::PositionClose(symbol), netting: `continue` after a failed OrderSend ends the do-while and the method
    returns true; with no position it answers 10006 REJECT."""
    account = Account()
    _sim, c = await make(account)
    raw = await c.ask(trade("POSITION_CLOSE_SYMBOL", symbol="EURUSD"))
    assert raw.startswith(b'{"error":true,"retcode":10006,"desription":"TRADE_RETCODE_REJECT"')
    await c.ask(BUY)
    account.market_closed.add("EURUSD")
    raw = await c.ask(trade("POSITION_CLOSE_SYMBOL", symbol="EURUSD"))
    assert raw.startswith(b'{"error":false,"retcode":10018,"desription":"TRADE_RETCODE_MARKET_CLOSED"')


# ----------------------------------------------------------------------------- GetPositions, GetOrders


async def test_hedging_listing_repeats_the_lowest_ticket(make: Make) -> None:
    """GetPositions: myposition.Select(PositionGetSymbol(i)) selects by symbol, i.e. PositionSelect, which on a
    hedging account picks the lowest ticket; ejtraderMT (single socket) lists each ticket, "error" after."""
    for single in (False, True):
        _sim, c = await make(Account(hedging=True, ticket_base=900), single_socket=single)
        ask = c.send if single else c.ask
        await ask(BUY)
        await ask({**SELL, "volume": 0.3})
        rows = json.loads(await ask({"action": "POSITIONS"}))["positions"]
        expected = [(900, "POSITION_TYPE_BUY", 0.1)] * 2 if not single else [
            (900, "POSITION_TYPE_BUY", 0.1), (901, "POSITION_TYPE_SELL", 0.3)]  # fmt: skip
        assert [(r["id"], r["type"], r["volume"]) for r in rows] == expected
        if single:
            assert list(json.loads(await ask({"action": "POSITIONS"}))) == ["positions", "error"]


async def test_errors_before_hook_pushes_an_error_before_the_answer(make: Make) -> None:
    """CheckError inside GetPositions' loop can push an ActionDoneOrError before the listing."""
    sim, c = await make()
    sim.errors_before("POSITIONS", 5040, "GetPositions")
    assert await c.send({"action": "POSITIONS"}) == b"OK"
    assert await c.recv(c.data) == done(5040, "Damaged parameter of string type", "GetPositions")
    assert await c.recv(c.data) == b'{"positions":[]}'
    assert await c.ask({"action": "POSITIONS"}) == b'{"positions":[]}'  # once


# ----------------------------------------------------------------------------- StreamPriceData, CONFIG, RESET


async def test_ticks_after_config_first_skipped_duplicates_reset_disconnect(make: Make) -> None:
    account = Account(server_utc_offset_s=7200)
    sim, c = await make(account)
    await live_ready(sim, c)
    config = {"action": "CONFIG", "symbol": "EURUSD", "chartTF": "TICK"}
    assert await c.ask(config) == done(0, "ERR_SUCCESS", "ScriptConfiguration")
    await sim.next_timer(2)  # the subscription has seen the current price: skipped
    account.set_price("EURUSD", D("1.08600"), D("1.08610"))
    tick = account.tick("EURUSD")
    assert tick is not None and abs(tick.time_msc - (time.time() + 7200) * 1000) < 5000
    expected = f'{{"status":"CONNECTED","symbol":"EURUSD","timeframe":"TICK","data":[{tick.time_msc},1.08600,1.08610]}}'
    assert await c.recv(c.live) == expected.encode()  # the first message is the new price, not the old one
    await c.ask(config)  # a second subscription: every tick twice
    await sim.next_timer(2)
    account.set_price("EURUSD", D("1.08700"), D("1.08710"))
    assert (await c.recv(c.live)) == (await c.recv(c.live))
    account.connected = False
    assert await c.recv(c.live) == b'{"status":"DISCONNECTED"}'
    await sim.next_timer(3)
    assert await c.quiet(c.live)  # only once
    account.connected = True
    assert await c.ask({"action": "RESET"}) == done(0, "ERR_SUCCESS", "ResetSubscriptionsAndIndicators")
    account.set_price("EURUSD", D("1.08800"), D("1.08810"))
    await sim.next_timer(3)
    assert await c.quiet(c.live)
    unknown = done(4301, "Unknown symbol", "ScriptConfiguration")  # and no ERR_SUCCESS after it
    assert await c.ask({"action": "CONFIG", "symbol": "NOPE", "chartTF": "TICK"}) == unknown
    assert len(sim.ea.subscriptions) == 1  # subscribed before the check


async def test_reload_rebinds_and_forgets_subscriptions_not_the_account(make: Make) -> None:
    account = Account()
    sim, c = await make(account)
    await c.ask(BUY)
    await c.ask({"action": "CONFIG", "symbol": "EURUSD", "chartTF": "TICK"})
    await sim.reload()
    assert sim.ea.subscriptions == []
    await c.ready()
    account.set_price("EURUSD", D("1.09000"), D("1.09010"))
    await sim.next_timer(3)
    assert await c.quiet(c.live)
    assert len((await c.ask_json({"action": "POSITIONS"}))["positions"]) == 1


# ----------------------------------------------------------------------------- fault injection


async def test_drop_replies_executes_but_never_answers(make: Make) -> None:
    sim, c = await make()
    sim.drop_replies = 1
    assert await c.send(BUY) == b"OK"
    assert (await event(c))["result"]["retcode"] == 10009  # executed; the event still comes
    assert (await c.ask({"action": "POSITIONS"})).startswith(b'{"error":false,"positions":[{')  # next on data


async def test_drop_events_executes_without_an_event(make: Make) -> None:
    sim, c = await make()
    sim.drop_events = 1
    assert (await c.ask(BUY)).startswith(b'{"error":false,"retcode":10009')
    await next_event_is_probe(c)


async def test_drop_replies_on_a_single_socket_loses_the_reply_not_the_socket(make: Make) -> None:
    sim, c = await make(Account(), single_socket=True)
    sim.drop_replies = 1
    await c.req.send(json.dumps(BUY).encode())
    assert await c.quiet(c.req, 500)
    assert json.loads(await c.send({"action": "POSITIONS"}))["positions"][0]["volume"] == 0.1  # a new REP serves


async def test_delay_next_hangs_the_ea_and_stop_still_works(make: Make) -> None:
    sim, c = await make()
    sim.delay_next("POSITIONS", 0.5)
    started = time.monotonic()
    assert await c.send({"action": "POSITIONS"}) == b"OK"  # OK first, then the EA hangs inside the request
    await c.req.send(json.dumps({"action": "BALANCE"}).encode())
    assert await c.quiet(c.req, 250)  # not even received while hanging
    assert await c.recv(c.req) == b"OK"
    assert time.monotonic() - started >= 0.45
    assert await c.recv(c.data) == b'{"positions":[]}'
    assert (await c.recv(c.data)).startswith(b'{"balance":')
    sim.delay_next("ACCOUNT", 60)
    assert await c.send({"action": "ACCOUNT"}) == b"OK"
    await asyncio.wait_for(sim.stop(), 2)


async def test_inject_answers_without_executing(make: Make) -> None:
    account = Account()
    _sim, c = await make(account)
    account.inject.append(10004)
    raw = await c.ask(BUY)
    assert raw == reply(True, 10004, "TRADE_RETCODE_REQUOTE", 0, "0.00000", "0.00000", "1.08495", "1.08505")
    assert (await event(c))["result"]["retcode"] == 10004
    assert await c.ask({"action": "POSITIONS"}) == b'{"positions":[]}'


async def test_timeout_but_execute(make: Make) -> None:
    account = Account()
    _sim, c = await make(account)
    account.timeout_but_execute = 1
    raw = await c.ask(BUY)
    assert raw == reply(True, 10012, "TRADE_RETCODE_TIMEOUT", 0, "0.00000", "0.00000", "0.00000", "0.00000")
    assert len((await c.ask_json({"action": "POSITIONS"}))["positions"]) == 1
    await next_event_is_probe(c)


# ----------------------------------------------------------------------------- extensions and the command line


async def test_symbolinfo_and_book_are_opt_in_extensions(make: Make) -> None:
    _sim, c = await make(symbolinfo="extension", book=True)
    flat = await c.ask_json({"action": "SYMBOLINFO", "symbol": "EURUSD"})
    assert (flat["digits"], flat["contract_size"], flat["calc_mode"]) == (5, 100000, "FOREX")
    assert (await c.ask_json({"action": "BOOK", "symbol": "EURUSD", "depth": 2}))["bids"][0] == [1.08495, 1]
    _sim, c = await make(symbolinfo="ejtrader")
    nested = await c.ask_json({"action": "SYMBOLINFO", "symbol": "EURUSD"})
    assert nested["error"] is False and nested["data"]["trade_contract_size"] == 100000
    assert nested["data"]["digits"] == 5 and nested["data"]["trade_calc_mode"] == "SYMBOL_CALC_MODE_FOREX"
    missing = await c.ask({"action": "SYMBOLINFO", "symbol": "NOPE"})
    assert missing == done(4301, "Symbol not found", "GetSymbolInfo")


async def test_account_margin_mode_is_an_opt_in_extension(make: Make) -> None:
    """GetAccountInfo never reads ACCOUNT_MARGIN_MODE; ``margin_mode`` adds it as an EA extension could."""
    _sim, c = await make(Account(hedging=True))
    assert "margin_mode" not in await c.ask_json({"action": "ACCOUNT"})
    _sim, c = await make(Account(hedging=True), margin_mode=True)
    assert (await c.ask_json({"action": "ACCOUNT"}))["margin_mode"] == "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING"
    _sim, c = await make(Account(), margin_mode=True)
    assert (await c.ask_json({"action": "ACCOUNT"}))["margin_mode"] == "ACCOUNT_MARGIN_MODE_RETAIL_NETTING"


def test_command_line_flags() -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--drop-trade-replies", "1", "--drop-trade-events", "2", "--timeout-but-execute", "3",
                         "--server-utc-offset-s", "10800", "--pending-retcode", "10009", "--symbolinfo", "ejtrader",
                         "--book", "--chart-symbol", "USDJPY", "--account-margin-mode"])  # fmt: skip
    assert (args.drop_trade_replies, args.drop_trade_events, args.timeout_but_execute) == (1, 2, 3)
    assert (args.server_utc_offset_s, args.pending_retcode) == (10800, 10009)
    assert (args.symbolinfo, args.book, args.chart_symbol) == ("ejtrader", True, "USDJPY")
    assert args.account_margin_mode
    with pytest.raises(SystemExit):
        p.parse_args(["--stock"])
