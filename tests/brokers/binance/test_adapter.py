"""The Binance spot adapter through the real ccxt client against the local Binance-compatible server."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import structlog

from ordermesh.brokers.binance.records import dec
from ordermesh.brokers.binance.settings import BinanceSpotSettings
from ordermesh.brokers.binance.spot import BinanceSpotAdapter
from ordermesh.brokers.model import (
    AuthenticationError,
    BookLevel,
    BrokerConnectionError,
    BrokerFill,
    BrokerOrderState,
    InsufficientFundsError,
    ModificationError,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.ids import client_order_id
from ordermesh.contract.wire import Liquidity, OrderType, PlaceOrder, Side, TimeInForce
from ordermesh.platform.config import ConfigError
from ordermesh.platform.log import MASK
from tools.binance_server import BinanceServer

D = Decimal
LIMIT = OrderType.LIMIT


def place(
    n: int | str,
    side: Side = Side.BUY,
    qty: str = "0.2",
    order_type: OrderType = OrderType.MARKET,
    limit: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "BTC/USDT",
) -> PlaceOrder:
    coid = client_order_id("bn-acct", f"intent-{n}")
    return PlaceOrder(
        command_id=f"place:{coid}", client_order_id=coid, intent_id=f"intent-{n}", strategy_id="s1",
        account="bn-acct", broker_id="binance", symbol=symbol, side=side, order_type=order_type,
        quantity=D(qty), limit_price=D(limit) if limit else None, time_in_force=tif,
    )  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def make_adapter(server: BinanceServer, broker_id: str = "binance", **kw: object) -> BinanceSpotAdapter:
    args: dict[str, object] = {
        "api_key": server.api_key, "api_secret": server.api_secret, "base_url": server.url, "timeout_s": 1.0,
        "max_backoff_s": 5.0, "poll_interval_s": 0.01,
    }  # fmt: skip
    args.update(kw)
    return BinanceSpotAdapter(broker_id, **args)  # type: ignore[arg-type]


@pytest.fixture
async def adapter(server: BinanceServer) -> AsyncIterator[BinanceSpotAdapter]:
    a = make_adapter(server)
    await a.connect()
    try:
        yield a
    finally:
        await a.close()


def usdt(server: BinanceServer) -> tuple[Decimal, Decimal]:
    free, locked = server.balances["USDT"]
    return free, locked


# ----------------------------------------------------------------------------------------- configuration


async def test_every_api_url_points_at_the_override_and_markets_load_in_one_call(server: BinanceServer) -> None:
    a = make_adapter(server)
    try:
        api = a.exchange.urls["api"]
        assert len(api) >= 20
        assert all(url.startswith(server.url + "/") for url in api.values()), api
        assert api["public"] == server.url + "/api/v3"
        assert api["fapiPrivate"] == server.url + "/fapi/v1"
        await a.connect()
        # the clock offset, the markets, then adoption
        assert server.requests == [("GET", "time"), ("GET", "exchangeInfo"), ("GET", "openOrders")]
        market = a.exchange.markets["BTC/USDT"]
        assert market["id"] == "BTCUSDT"
        assert a.amount_to_precision("BTC/USDT", D("0.123456789")) == "0.12345"  # LOT_SIZE step, truncated
        assert a.price_to_precision("BTC/USDT", D("50000.126")) == "50000.13"  # PRICE_FILTER tick, rounded
    finally:
        await a.close()


async def test_testnet_uses_sandbox_urls_and_never_with_an_override() -> None:
    a = BinanceSpotAdapter("bt", testnet=True)
    try:
        assert a.exchange.urls["api"]["public"].startswith("https://testnet.binance.vision/")
    finally:
        await a.close()
    reg = BrokerRegistry({"b": {"type": "binance_spot", "base_url": "http://127.0.0.1:1", "testnet": True}}, env={})
    with pytest.raises(ConfigError, match="exclusive"):
        reg.adapter("b")


async def test_registry_substitutes_keys_masks_them_and_builds_the_adapter(server: BinanceServer) -> None:
    raw = {
        "bn": {
            "type": "binance_spot", "api_key": "${OM_BN_KEY}", "api_secret": "${OM_BN_SECRET}",
            "base_url": server.url, "recv_window": 7000, "timeout": 2.5,
        }
    }  # fmt: skip
    env = {"OM_BN_KEY": server.api_key, "OM_BN_SECRET": server.api_secret}
    reg = BrokerRegistry(raw, env=env)
    settings = reg.settings("bn")
    assert isinstance(settings, BinanceSpotSettings)
    assert (settings.api_key, settings.api_secret, settings.recv_window) == (server.api_key, server.api_secret, 7000)
    row = reg.describe("bn")
    assert row["api_key"] == MASK and row["api_secret"] == MASK
    assert server.api_secret not in repr(row) and server.api_key not in repr(row)
    a = reg.adapter("bn")
    assert isinstance(a, BinanceSpotAdapter)
    try:
        assert a.exchange.options["recvWindow"] == 7000 and a.exchange.timeout == 2500
        assert await a.validate_connection()
        assert (await a.get_balance()).balance == D("100000")
    finally:
        await a.close()
    missing = BrokerRegistry(raw, env={})
    assert missing.validate() == [
        "error: brokers.bn: environment variable OM_BN_KEY is not set (used at $.brokers.bn.api_key)"
    ]


# ----------------------------------------------------------------------------------------- reading


async def test_validate_connection(adapter: BinanceSpotAdapter) -> None:
    assert await adapter.validate_connection()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: connection refused
        a = BinanceSpotAdapter("dead", base_url=dead, timeout_s=1.0)
        try:
            assert not await a.validate_connection()
        finally:
            await a.close()


async def test_order_book_exact(adapter: BinanceSpotAdapter) -> None:
    book = await adapter.get_order_book("BTC/USDT", depth=2)
    assert book.symbol == "BTC/USDT"
    assert book.bids == [BookLevel(D("49999"), D("0.5")), BookLevel(D("49998"), D("1"))]
    assert book.asks == [BookLevel(D("50001"), D("0.3")), BookLevel(D("50002"), D("1"))]
    by_id = await adapter.get_order_book("BTCUSDT", depth=1)
    assert by_id.asks == [BookLevel(D("50001"), D("0.3"))]


async def test_balance_and_positions_from_spot_balances(adapter: BinanceSpotAdapter) -> None:
    bal = await adapter.get_balance()
    assert (bal.currency, bal.balance, bal.equity, bal.free_margin, bal.margin_used) == (
        "USDT", D("100000"), D("100000"), D("100000"), D(0),
    )  # fmt: skip
    positions = await adapter.get_positions()
    assert [(p.symbol, p.quantity, p.avg_price) for p in positions] == [("BTC/USDT", D("1"), D(0))]


# ----------------------------------------------------------------------------------------- orders


async def test_market_buy_walks_the_book_with_fills_and_commissions(
    adapter: BinanceSpotAdapter, server: BinanceServer
) -> None:
    order = await adapter.place_order(place(1, qty="0.5"))
    assert order.state is BrokerOrderState.FILLED
    assert (order.quantity, order.filled_qty, order.leaves_qty) == (D("0.5"), D("0.5"), D(0))
    (oid,) = server.orders
    assert order.broker_order_id == str(oid)
    assert server.orders[oid].client_order_id == order.client_order_id  # sent as newClientOrderId
    t1, t2 = server.trades
    assert order.fills == [
        BrokerFill(fill_id=str(t1.id), quantity=D("0.3"), price=D("50001"), commission=D("0.0003"),
                   commission_asset="BTC", liquidity=Liquidity.TAKER, ts_ns=order.fills[0].ts_ns),
        BrokerFill(fill_id=str(t2.id), quantity=D("0.2"), price=D("50002"), commission=D("0.0002"),
                   commission_asset="BTC", liquidity=Liquidity.TAKER, ts_ns=order.fills[1].ts_ns),
    ]  # fmt: skip
    assert all(isinstance(f.price, Decimal) and isinstance(f.commission, Decimal) for f in order.fills)
    bal = await adapter.get_balance()
    assert bal.balance == D("100000") - D("0.3") * D("50001") - D("0.2") * D("50002") == D("74999.3")
    positions = await adapter.get_positions()
    assert [(p.symbol, p.quantity) for p in positions] == [("BTC/USDT", D("1.4995"))]  # 1 + 0.5 - 0.0005 fee


async def test_market_sell_commission_in_quote(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    order = await adapter.place_order(place(2, side=Side.SELL, qty="0.5"))
    assert order.state is BrokerOrderState.FILLED
    assert [(f.quantity, f.price, f.commission, f.commission_asset) for f in order.fills] == [
        (D("0.5"), D("49999"), D("24.9995"), "USDT")
    ]
    assert server.balances["USDT"][0] == D("100000") + D("24999.5") - D("24.9995")
    assert server.balances["BTC"][0] == D("0.5")


async def test_resting_limit_locks_funds_and_cancel_releases_them(
    adapter: BinanceSpotAdapter, server: BinanceServer
) -> None:
    order = await adapter.place_order(place(3, qty="0.2", order_type=LIMIT, limit="49000"))
    assert (order.state, order.limit_price, order.filled_qty, order.fills) == (
        BrokerOrderState.NEW, D("49000"), D(0), [],
    )  # fmt: skip
    bal = await adapter.get_balance()
    assert (bal.balance, bal.free_margin, bal.margin_used) == (D("100000"), D("90200"), D("9800"))
    status = await adapter.get_order_status(order.client_order_id)
    assert status.state is BrokerOrderState.NEW and status.broker_order_id == order.broker_order_id
    canceled = await adapter.cancel_order(order.client_order_id)
    assert canceled.state is BrokerOrderState.CANCELED
    assert usdt(server) == (D("100000"), D(0))
    assert server.open_orders() == []
    with pytest.raises(OrderNotFoundError) as exc:  # canceling a closed order: Binance -2011
        await adapter.cancel_order(order.client_order_id)
    assert (exc.value.code, exc.value.message) == ("-2011", "Unknown order sent.")


async def test_time_in_force_ioc_and_fok_expire(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    ioc = await adapter.place_order(place(4, qty="0.5", order_type=LIMIT, limit="50001", tif=TimeInForce.IOC))
    assert (ioc.state, ioc.filled_qty, [f.quantity for f in ioc.fills]) == (
        BrokerOrderState.EXPIRED, D("0.3"), [D("0.3")],
    )  # fmt: skip
    fok = await adapter.place_order(place(5, qty="2", order_type=LIMIT, limit="50002", tif=TimeInForce.FOK))
    assert (fok.state, fok.filled_qty, fok.fills) == (BrokerOrderState.EXPIRED, D(0), [])
    assert usdt(server) == (D("100000") - D("0.3") * D("50001"), D(0))  # nothing left locked
    with pytest.raises(OrderError, match="DAY is not supported"):
        await adapter.place_order(place(6, order_type=LIMIT, limit="49000", tif=TimeInForce.DAY))


async def test_partial_fills_polled_once_each_with_commissions(
    adapter: BinanceSpotAdapter, server: BinanceServer
) -> None:
    order = await adapter.place_order(place(7, qty="0.2", order_type=LIMIT, limit="49000"))
    assert await adapter.poll_working() == [order]  # first report of the working order
    assert await adapter.poll_working() == []
    oid = int(order.broker_order_id)
    first = server.fill(oid, D("0.05"))
    updates = adapter.order_updates()
    update = await asyncio.wait_for(anext(updates), 5)
    assert (update.state, update.filled_qty) == (BrokerOrderState.PARTIALLY_FILLED, D("0.05"))
    assert update.fills == [
        BrokerFill(fill_id=str(first.id), quantity=D("0.05"), price=D("49000"), commission=D("0.00005"),
                   commission_asset="BTC", liquidity=Liquidity.MAKER, ts_ns=first.time_ms * 1_000_000),
    ]  # fmt: skip
    assert await adapter.poll_working() == []  # nothing new: nothing reported again
    second = server.fill(oid, D("0.15"))
    update = await asyncio.wait_for(anext(updates), 5)
    await updates.aclose()
    assert (update.state, update.filled_qty) == (BrokerOrderState.FILLED, D("0.2"))
    assert [(f.fill_id, f.quantity, f.commission) for f in update.fills] == [
        (str(first.id), D("0.05"), D("0.00005")),
        (str(second.id), D("0.15"), D("0.00015")),
    ]
    status = await adapter.get_order_status(order.client_order_id)
    assert [f.fill_id for f in status.fills] == [str(first.id), str(second.id)]  # deduplicated by trade id
    assert await adapter.poll_working() == []
    assert usdt(server) == (D("100000") - D("9800"), D(0))
    assert server.balances["BTC"] == [D("1.1998"), D(0)]


async def test_modify_is_cancel_replace_keeping_fills(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    order = await adapter.place_order(place(8, qty="0.2", order_type=LIMIT, limit="49000"))
    trade = server.fill(int(order.broker_order_id), D("0.05"))
    modified = await adapter.modify_order(order.client_order_id, quantity=D("0.3"), limit_price=D("49500"))
    assert (modified.quantity, modified.filled_qty, modified.limit_price, modified.state) == (
        D("0.3"), D("0.05"), D("49500"), BrokerOrderState.NEW,
    )  # fmt: skip
    assert [f.fill_id for f in modified.fills] == [str(trade.id)]
    (working,) = server.open_orders()
    assert (working.client_order_id, working.orig_qty, working.price) == (
        f"{order.client_order_id}.1", D("0.25"), D("49500"),
    )  # fmt: skip
    assert server.orders[int(order.broker_order_id)].status == "CANCELED"
    assert usdt(server)[1] == D("0.25") * D("49500")
    server.fill(working.order_id, D("0.25"))
    done = await adapter.get_order_status(order.client_order_id)
    assert (done.state, done.filled_qty, len(done.fills)) == (BrokerOrderState.FILLED, D("0.3"), 2)
    with pytest.raises(ModificationError):
        await adapter.modify_order(order.client_order_id, limit_price=D("49600"))
    other = await adapter.place_order(place(21, qty="0.2", order_type=LIMIT, limit="49000"))
    with pytest.raises(ModificationError) as exc:  # replacement refused by PRICE_FILTER: the order ends canceled
        await adapter.modify_order(other.client_order_id, limit_price=D("2000000"))
    assert exc.value.code == "-1013"
    assert (await adapter.get_order_status(other.client_order_id)).state is BrokerOrderState.CANCELED
    assert server.open_orders() == []
    market = await adapter.place_order(place(9, qty="0.01"))
    with pytest.raises(ModificationError, match="only limit"):
        await adapter.modify_order(market.client_order_id, quantity=D("0.02"))


async def test_status_of_unknown_orders(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    with pytest.raises(OrderNotFoundError):
        await adapter.get_order_status(place(10).client_order_id)
    with pytest.raises(OrderNotFoundError):
        await adapter.cancel_order(place(10).client_order_id)
    # an order this adapter never placed (another process, before a restart) is found among the open orders
    other = make_adapter(server)
    try:
        placed = await other.place_order(place(11, order_type=LIMIT, limit="48000"))
    finally:
        await other.close()
    found = await adapter.get_order_status(placed.client_order_id)
    assert (found.broker_order_id, found.state, found.quantity, found.limit_price) == (
        placed.broker_order_id, BrokerOrderState.NEW, D("0.2"), D("48000"),
    )  # fmt: skip


async def test_restart_adopts_open_orders_and_polls_their_fills(server: BinanceServer) -> None:
    before = make_adapter(server)
    try:
        placed = await before.place_order(place(22, qty="0.2", order_type=LIMIT, limit="49000"))
        await before.modify_order(placed.client_order_id, limit_price=D("49100"))
    finally:
        await before.close()
    after = make_adapter(server)
    try:
        await after.connect()  # adopts om-... orders (the replaced leg om-....1 belongs to om-...)
        (working,) = server.open_orders()
        trade = server.fill(working.order_id, D("0.05"))
        (update,) = await after.poll_working()
        assert (update.client_order_id, update.broker_order_id, update.state, update.limit_price) == (
            placed.client_order_id, str(working.order_id), BrokerOrderState.PARTIALLY_FILLED, D("49100"),
        )  # fmt: skip
        assert [(f.fill_id, f.quantity, f.commission) for f in update.fills] == [
            (str(trade.id), D("0.05"), D("0.00005"))
        ]
        assert (await after.cancel_order(placed.client_order_id)).state is BrokerOrderState.CANCELED
    finally:
        await after.close()


# ----------------------------------------------------------------------------------------- idempotency


async def test_duplicate_client_order_id_never_creates_a_second_order(
    adapter: BinanceSpotAdapter, server: BinanceServer
) -> None:
    cmd = place(12, order_type=LIMIT, limit="49000")
    first = await adapter.place_order(cmd)
    again = await adapter.place_order(cmd)  # same adapter: answered from what it knows, after a status query
    assert again.broker_order_id == first.broker_order_id
    restarted = make_adapter(server)  # a fresh adapter (gateway restart): Binance rejects the duplicate
    try:
        dup = await restarted.place_order(cmd)
    finally:
        await restarted.close()
    assert dup.broker_order_id == first.broker_order_id and dup.state is BrokerOrderState.NEW
    assert server.count_requests("POST", "order") == 2
    assert len(server.orders) == 1
    assert usdt(server) == (D("90200"), D("9800"))  # locked once


async def test_timeout_then_retry_yields_one_order(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    cmd = place(13, qty="0.1")
    server.hold_next("order")  # processed, answer held past the client's 1 s timeout
    with pytest.raises(BrokerConnectionError):
        await adapter.place_order(cmd)
    server.release()
    assert len(server.orders) == 1
    retried = await adapter.place_order(cmd)  # the retry asks first (GET by origClientOrderId), places nothing
    assert retried.state is BrokerOrderState.FILLED and retried.filled_qty == D("0.1")
    assert len(retried.fills) == 1 and retried.fills[0].commission == D("0.0001")
    assert server.count_requests("POST", "order") == 1
    assert len(server.orders) == 1
    assert server.requests[-2:] == [("GET", "order"), ("GET", "myTrades")]


async def test_timeout_before_processing_then_retry_places_once(
    adapter: BinanceSpotAdapter, server: BinanceServer
) -> None:
    cmd = place(14, qty="0.1")
    server.drop_next("order")  # never processed, no answer in time
    with pytest.raises(BrokerConnectionError):
        await adapter.place_order(cmd)
    server.release()
    assert server.orders == {}
    with pytest.raises(OrderNotFoundError):  # the status query resolves it: it never reached Binance
        await adapter.get_order_status(cmd.client_order_id)
    placed = await adapter.place_order(cmd)
    assert placed.state is BrokerOrderState.FILLED
    assert len(server.orders) == 1 and server.count_requests("POST", "order") == 2


async def test_rate_limit_backs_off_honouring_retry_after(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    server.rate_limit_next("order", retry_after_s=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    order = await adapter.place_order(place(15, qty="0.1"))
    assert loop.time() - started >= 1.0
    assert order.state is BrokerOrderState.FILLED
    assert adapter.backoffs == [1.0]
    assert len(server.orders) == 1 and server.count_requests("POST", "order") == 2
    assert adapter.used_weight == server.weight
    adapter.max_backoff_s = 0.0
    server.rate_limit_next("depth", retry_after_s=60, count=4)
    with pytest.raises(BrokerConnectionError, match="retries exhausted"):
        await adapter.get_order_book("BTC/USDT")
    assert adapter.backoffs == [1.0, 0.0, 0.0, 0.0]  # Retry-After capped by max_backoff_s


# ----------------------------------------------------------------------------------------- errors


async def test_insufficient_funds(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    with pytest.raises(InsufficientFundsError) as exc:
        await adapter.place_order(place(16, qty="2.5", order_type=LIMIT, limit="49000"))
    assert (exc.value.code, exc.value.message) == ("-2010", "Account has insufficient balance for requested action.")
    assert server.orders == {}


@pytest.mark.parametrize(
    ("qty", "limit", "msg"),
    [
        ("0.0001", "49000", "Filter failure: NOTIONAL"),
        ("9001", "49000", "Filter failure: LOT_SIZE"),
        ("0.1", "2000000", "Filter failure: PRICE_FILTER"),
    ],
)
async def test_filter_failures(
    adapter: BinanceSpotAdapter, server: BinanceServer, qty: str, limit: str, msg: str
) -> None:
    with pytest.raises(OrderError) as exc:
        await adapter.place_order(place(f"filter-{msg}", qty=qty, order_type=LIMIT, limit=limit))
    assert type(exc.value) is OrderError
    assert (exc.value.code, exc.value.message) == ("-1013", msg)
    assert server.orders == {}


async def test_rejected_order_can_be_resent_corrected(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    server.fail_next("order", -1013, "Filter failure: PRICE_FILTER")
    cmd = place(17, qty="0.1")
    with pytest.raises(OrderError):
        await adapter.place_order(cmd)
    assert (await adapter.place_order(cmd)).state is BrokerOrderState.FILLED
    assert len(server.orders) == 1


async def test_bad_symbol(adapter: BinanceSpotAdapter, server: BinanceServer) -> None:
    with pytest.raises(SymbolNotFoundError):  # unknown to ccxt's markets: refused before any request
        await adapter.place_order(place(18, symbol="DOGE/EUR"))
    server.symbols.pop("BTCUSDT")  # delisted after the markets were loaded: Binance answers -1121
    with pytest.raises(SymbolNotFoundError) as exc:
        await adapter.get_order_book("BTC/USDT")
    assert (exc.value.code, exc.value.message) == ("-1121", "Invalid symbol.")


async def test_authentication_errors(server: BinanceServer) -> None:
    cases = [
        ({"api_secret": "wrong-secret"}, "-1022", "Signature for this request is not valid."),
        ({"api_key": "wrong-key"}, "-2015", "Invalid API-key, IP, or permissions for action."),
    ]
    for kw, code, msg in cases:
        a = make_adapter(server, **kw)
        try:
            with pytest.raises(AuthenticationError) as exc:
                await a.get_balance()
            assert (exc.value.code, exc.value.message) == (code, msg)
        finally:
            await a.close()


async def test_a_timestamp_refused_again_after_the_clock_is_measured_is_an_authentication_error(
    adapter: BinanceSpotAdapter, server: BinanceServer
) -> None:
    msg = "Timestamp for this request is outside of the recvWindow."
    server.fail_next("order", -1021, msg)
    server.fail_next("order", -1021, msg)  # refused again after the clock was measured: given up, nothing placed
    with pytest.raises(AuthenticationError) as exc:
        await adapter.place_order(place(19, qty="0.1"))
    assert (exc.value.code, exc.value.message) == ("-1021", msg)
    assert server.orders == {} and server.count_requests("POST", "order") == 2
    assert adapter.connected  # the clock, not the key nor the network


async def test_secrets_never_logged(server: BinanceServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a = make_adapter(server)
    try:
        with structlog.testing.capture_logs() as logs:
            server.hold_next("order")
            with pytest.raises(BrokerConnectionError):
                await a.place_order(place(20, qty="0.1"))
            server.release()
            await a.place_order(place(20, qty="0.1"))
            server.rate_limit_next("depth", retry_after_s=0)
            await a.get_order_book("BTC/USDT")
    finally:
        await a.close()
    assert len(logs) >= 3  # unknown outcome, its resolution, the back-off
    text = repr(logs) + caplog.text
    assert server.api_key not in text and server.api_secret not in text and "signature" not in text


def test_dec_refuses_floats() -> None:
    assert dec("0.10000000") == D("0.1") and str(dec("100000.00000000")) == "100000"
    with pytest.raises(TypeError):
        dec(0.1)
