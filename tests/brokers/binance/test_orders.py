"""Binance stop orders, attached stop-loss / take-profit and hedge mode: real ccxt against the local server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import msgspec
import pytest

from ordermesh.brokers.model import BrokerConnectionError, BrokerOrderState, OrderError
from ordermesh.brokers.reports import attached_command
from ordermesh.contract.wire import OrderType, PlaceOrder, Side
from tests.brokers.binance import test_adapter as spot_t
from tests.brokers.binance import test_futures as fut_t
from tools.binance_server import BinanceServer

D = Decimal
NEW, FILLED, EXPIRED = BrokerOrderState.NEW, BrokerOrderState.FILLED, BrokerOrderState.EXPIRED


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def with_(cmd: PlaceOrder, **kw: object) -> PlaceOrder:
    return msgspec.structs.replace(cmd, **kw)


def by_coid(views: list) -> dict:  # type: ignore[type-arg]
    return {v.client_order_id: v for v in views}


# ----------------------------------------------------------------------------------------- spot


async def test_spot_stop_waits_for_its_trigger_then_fills(server: BinanceServer) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        cmd = with_(spot_t.place(1, side=Side.SELL, qty="0.1"), order_type=OrderType.STOP, stop_price=D("49500"))
        order = await a.place_order(cmd)
        assert (order.state, order.filled_qty) == (NEW, D(0))
        (resting,) = server.open_orders()
        assert (resting.type, resting.stop_price) == ("STOP_LOSS", D("49500"))
        assert server.balances["BTC"][1] == D("0.1")  # locked while it waits
        await a.poll_working()
        server.set_last_price("BTCUSDT", "49400")  # falls through the stop: a market sell
        (update,) = await a.poll_working()
        assert (update.state, update.filled_qty, [f.price for f in update.fills]) == (FILLED, D("0.1"), [D("49999")])
    finally:
        await a.close()


async def test_spot_stop_limit_and_an_immediate_trigger_is_refused(server: BinanceServer) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        cmd = with_(spot_t.place(2, qty="0.1"), order_type=OrderType.STOP_LIMIT, stop_price=D("50500"),
                    limit_price=D("50600"))  # fmt: skip
        await a.place_order(cmd)
        (resting,) = server.open_orders()
        assert (resting.type, resting.stop_price, resting.price) == ("STOP_LOSS_LIMIT", D("50500"), D("50600"))
        with pytest.raises(OrderError) as exc:  # a buy stop below the market would trigger at once
            await a.place_order(with_(spot_t.place(3, qty="0.1"), order_type=OrderType.STOP, stop_price=D("49000")))
        assert (exc.value.code, exc.value.message) == ("-2010", "Order would trigger immediately.")
    finally:
        await a.close()


async def test_spot_attached_stop_loss_and_take_profit_become_one_oco_for_what_was_bought(
    server: BinanceServer,
) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        cmd = with_(spot_t.place(4, qty="0.01"), stop_loss=D("49000"), take_profit=D("52000"))
        parent = await a.place_order(cmd)
        assert (parent.state, parent.filled_qty) == (FILLED, D("0.01"))
        legs = {o.client_order_id: o for o in server.open_orders()}
        sl, tp = legs[cmd.client_order_id + "-sl"], legs[cmd.client_order_id + "-tp"]
        # 0.01 bought, 0.00001 BTC commission: the OCO sells what is held
        assert (sl.type, sl.side, sl.stop_price, sl.orig_qty) == ("STOP_LOSS", "SELL", D("49000"), D("0.00999"))
        assert (tp.type, tp.price, tp.orig_qty) == ("LIMIT_MAKER", D("52000"), D("0.00999"))
        views = by_coid(await a.poll_working())
        assert {v.parent_client_order_id for k, v in views.items() if k != cmd.client_order_id} == {cmd.client_order_id}
        server.set_last_price("BTCUSDT", "48900")  # the stop triggers; the take-profit leg expires with it
        views = by_coid(await a.poll_working())
        assert (views[sl.client_order_id].state, views[sl.client_order_id].filled_qty) == (FILLED, D("0.00999"))
        assert views[tp.client_order_id].state is EXPIRED
        assert server.open_orders() == []
        assert await a.poll_working() == []
    finally:
        await a.close()


# "New order (TRADE)" and "New Order list - OCO (TRADE)" of binance-spot-api-docs rest-api.md: every parameter
NEW_ORDER = {
    "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId", "strategyId",
    "strategyType", "stopPrice", "trailingDelta", "icebergQty", "newOrderRespType", "selfTradePreventionMode",
    "pegPriceType", "pegOffsetValue", "pegOffsetType", "recvWindow", "timestamp",
}  # fmt: skip
OCO_LIST = {"symbol", "listClientOrderId", "side", "quantity", "newOrderRespType", "selfTradePreventionMode",
            "recvWindow", "timestamp"} | {
    f"{leg}{name}" for leg in ("above", "below") for name in (
        "Type", "ClientOrderId", "IcebergQty", "Price", "StopPrice", "TrailingDelta", "TimeInForce", "StrategyId",
        "StrategyType", "PegPriceType", "PegOffsetType", "PegOffsetValue",
    )
}  # fmt: skip


def posted(server: BinanceServer, name: str) -> list[dict[str, str]]:
    """The parameters of each POST to ``name``, less the timestamp (checked apart)."""
    out = []
    for method, path, params in server.sent:
        if (method, path) == ("POST", name):
            assert set(params) >= {"timestamp", "recvWindow"}
            out.append({k: v for k, v in params.items() if k not in ("timestamp", "recvWindow")})
    return out


async def test_spot_stop_stop_limit_and_oco_requests_are_the_documented_ones(server: BinanceServer) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        stop = with_(spot_t.place(41, side=Side.SELL, qty="0.1"), order_type=OrderType.STOP, stop_price=D("49500"))
        stop_limit = with_(spot_t.place(42, qty="0.1"), order_type=OrderType.STOP_LIMIT, stop_price=D("50500"),
                           limit_price=D("50600"))  # fmt: skip
        protected = with_(spot_t.place(43, qty="0.01"), stop_loss=D("49000"), take_profit=D("52000"))
        for cmd in (stop, stop_limit, protected):
            await a.place_order(cmd)
        sent_stop, sent_stop_limit, _market = posted(server, "order")
        assert sent_stop == {
            "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "quantity": "0.1", "stopPrice": "49500",
            "newClientOrderId": stop.client_order_id, "newOrderRespType": "FULL",
        }  # fmt: skip
        assert sent_stop_limit == {
            "symbol": "BTCUSDT", "side": "BUY", "type": "STOP_LOSS_LIMIT", "quantity": "0.1", "price": "50600",
            "stopPrice": "50500", "timeInForce": "GTC", "newClientOrderId": stop_limit.client_order_id,
            "newOrderRespType": "FULL",
        }  # fmt: skip
        (sent_oco,) = posted(server, "orderList/oco")
        coid = protected.client_order_id
        assert sent_oco == {
            "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.00999", "listClientOrderId": f"{coid}-oco",
            "newOrderRespType": "FULL", "aboveType": "LIMIT_MAKER", "abovePrice": "52000",
            "aboveClientOrderId": f"{coid}-tp", "belowType": "STOP_LOSS", "belowStopPrice": "49000",
            "belowClientOrderId": f"{coid}-sl",
        }  # fmt: skip
        assert all(set(p) | {"timestamp", "recvWindow"} <= NEW_ORDER for p in posted(server, "order"))
        assert set(sent_oco) <= OCO_LIST
        # each was taken: the stops wait, the OCO's two legs rest under our ids
        waiting = {o.client_order_id: (o.type, o.working) for o in server.open_orders()}
        assert waiting == {
            stop.client_order_id: ("STOP_LOSS", False), stop_limit.client_order_id: ("STOP_LOSS_LIMIT", False),
            f"{coid}-sl": ("STOP_LOSS", False), f"{coid}-tp": ("LIMIT_MAKER", True),
        }  # fmt: skip
    finally:
        await a.close()


# ----------------------------------------------------------------------------------------- futures


async def test_futures_stop_market_is_an_algo_order_followed_to_its_fill(server: BinanceServer) -> None:
    a = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        cmd = with_(fut_t.place(1, qty="0.01"), order_type=OrderType.STOP, stop_price=D("50500"))
        placed = await a.place_order(cmd)
        (algo,) = server.futures.algos.values()
        assert (algo.type, algo.trigger_price, algo.client_algo_id, algo.status) == (
            "STOP_MARKET", D("50500"), cmd.client_order_id, "NEW",
        )  # fmt: skip
        assert (placed.state, placed.broker_order_id) == (NEW, str(algo.algo_id))  # its algoId until it triggers
        assert server.count_requests("POST", "fapi/v1/order") == 0  # never the endpoint that answers -4120
        assert [v.state for v in await a.poll_working()] == [NEW]
        assert await a.poll_working() == []  # waiting: one openAlgoOrders request per poll, nothing else
        assert server.requests[-1] == ("GET", "fapi/v1/openAlgoOrders")
        (actual,) = server.futures.set_last_price("BTCUSDT", "50600")  # triggers: a market buy from the book
        (update,) = await a.poll_working()
        assert (update.state, update.filled_qty, update.broker_order_id) == (FILLED, D("0.01"), str(actual.order_id))
        assert [(f.price, f.commission, f.commission_asset) for f in update.fills] == [
            (D("50001"), D("0.2000040"), "USDT"),
        ]
        (pos,) = await a.get_positions()
        assert pos.quantity == D("0.01")
        assert await a.poll_working() == []
    finally:
        await a.close()


async def test_futures_stop_limit_rests_as_its_placed_order_and_cancels_follow_it(server: BinanceServer) -> None:
    a = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        stop_limit = {"order_type": OrderType.STOP_LIMIT, "stop_price": D("50500"), "limit_price": D("50000")}
        waiting = with_(fut_t.place(2, qty="0.01"), **stop_limit)
        racing = with_(fut_t.place(3, qty="0.02"), **stop_limit)
        await a.place_order(waiting)
        await a.place_order(racing)
        assert {a_.client_algo_id: (a_.type, a_.price) for a_ in server.futures.algos.values()} == {
            waiting.client_order_id: ("STOP", D("50000")), racing.client_order_id: ("STOP", D("50000")),
        }  # fmt: skip
        # a waiting algo order is canceled in the Algo Service
        canceled = await a.cancel_order(waiting.client_order_id)
        assert canceled.state is BrokerOrderState.CANCELED
        assert server.futures.algo(waiting.client_order_id).status == "CANCELED"
        # the other triggers before the cancel arrives: it rests as a LIMIT buy at 50000 (asks from 50001)
        (actual,) = server.futures.set_last_price("BTCUSDT", "50500")
        assert (actual.type, actual.price, actual.open) == ("LIMIT", D("50000"), True)
        canceled = await a.cancel_order(racing.client_order_id)  # the algo cancel fails: the placed order is canceled
        assert (canceled.state, canceled.broker_order_id) == (BrokerOrderState.CANCELED, str(actual.order_id))
        assert server.futures.orders[actual.order_id].status == "CANCELED"
        assert [o for o in server.futures.orders.values() if o.open] == []
    finally:
        await a.close()


async def test_futures_algo_order_refused_at_its_trigger_is_rejected(server: BinanceServer) -> None:
    """The Algo Service checks margin only when the order triggers: a stop too big for the wallet is accepted, then
    REJECTED when the price reaches it."""
    a = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        cmd = with_(fut_t.place(4, qty="5"), order_type=OrderType.STOP, stop_price=D("50500"))  # 250k at 20x: 12.5k
        assert (await a.place_order(cmd)).state is NEW
        assert server.futures.set_last_price("BTCUSDT", "50600") == []
        (update,) = [v for v in await a.poll_working() if v.state is not NEW]
        assert (update.client_order_id, update.state, update.filled_qty) == (
            cmd.client_order_id, BrokerOrderState.REJECTED, D(0),
        )  # fmt: skip
    finally:
        await a.close()


async def test_futures_attached_orders_protect_the_fill_and_one_cancels_the_other(server: BinanceServer) -> None:
    a = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        cmd = with_(fut_t.place(5, qty="0.02"), stop_loss=D("49000"), take_profit=D("51000"))
        assert (await a.place_order(cmd)).state is FILLED
        sl = server.futures.algo(cmd.client_order_id + "-sl")
        tp = server.futures.algo(cmd.client_order_id + "-tp")
        assert (sl.type, sl.side, sl.trigger_price, sl.qty, sl.working_type, sl.reduce_only) == (
            "STOP_MARKET", "SELL", D("49000"), D("0.02"), "MARK_PRICE", True,
        )  # fmt: skip
        assert (tp.type, tp.trigger_price, tp.reduce_only) == ("TAKE_PROFIT_MARKET", D("51000"), True)
        views = by_coid(await a.poll_working())
        assert {views[k].parent_client_order_id for k in (sl.client_algo_id, tp.client_algo_id)} == {
            cmd.client_order_id
        }
        server.futures.set_mark_price("BTCUSDT", "51100")  # mark-price trigger: the take-profit closes
        views = by_coid(await a.poll_working())
        assert (views[tp.client_algo_id].state, views[tp.client_algo_id].filled_qty) == (FILLED, D("0.02"))
        assert views[tp.client_algo_id].parent_client_order_id == cmd.client_order_id
        assert views[sl.client_algo_id].state is BrokerOrderState.CANCELED  # its sibling, canceled by us
        assert [server.futures.algo_view(x)["algoStatus"] for x in (sl, tp)] == ["CANCELED", "FINISHED"]
        assert await a.get_positions() == []
    finally:
        await a.close()


async def test_a_restarted_futures_adapter_resumes_protective_algo_orders_and_still_cancels_the_sibling(
    server: BinanceServer,
) -> None:
    """The gateway remembers the protective orders' commands (``attached_command``); a new adapter resumes them as
    algo orders with their parent, so when one fills it cancels the other."""
    first = fut_t.make_adapter(server, heartbeat_interval_s=0)
    cmd = with_(fut_t.place(6, qty="0.02"), stop_loss=D("49000"), take_profit=D("51000"))
    try:
        await first.connect()
        filled = await first.place_order(cmd)
    finally:
        await first.close()
    second = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await second.resume([attached_command(cmd, "sl", filled.filled_qty), attached_command(cmd, "tp", D("0.02"))])
        await second.connect()
        views = by_coid(await second.poll_working())
        assert {k: (v.state, v.parent_client_order_id) for k, v in views.items()} == {
            cmd.client_order_id + "-sl": (NEW, cmd.client_order_id),
            cmd.client_order_id + "-tp": (NEW, cmd.client_order_id),
        }
        server.futures.set_mark_price("BTCUSDT", "48900")  # the stop-loss closes the long
        views = by_coid(await second.poll_working())
        assert views[cmd.client_order_id + "-sl"].state is FILLED
        assert views[cmd.client_order_id + "-tp"].state is BrokerOrderState.CANCELED
        assert server.futures.algo(cmd.client_order_id + "-tp").status == "CANCELED"
        assert await second.get_positions() == []
    finally:
        await second.close()


async def test_futures_hedge_mode_long_and_short_positions_and_closes(server: BinanceServer) -> None:
    a = fut_t.make_adapter(server, heartbeat_interval_s=0, hedge_mode=True)
    try:
        await a.connect()
        assert server.futures.dual_side is True
        long = await a.place_order(fut_t.place(3, qty="0.03"))
        short = await a.place_order(fut_t.place(4, side=Side.SELL, qty="0.01"))
        assert [f.position_id for f in long.fills] == ["LONG"] and [f.position_id for f in short.fills] == ["SHORT"]
        positions = {p.position_id: p.quantity for p in await a.get_positions()}
        assert positions == {"LONG": D("0.03"), "SHORT": D("-0.01")}
        # a reduce-only sell closes the long (sent as positionSide LONG; reduceOnly is refused in hedge mode)
        await a.place_order(fut_t.place(5, side=Side.SELL, qty="0.01", reduce_only=True))
        # close-all names the position: a buy of the SHORT position
        await a.place_order(with_(fut_t.place(6, qty="0.01"), position_id="SHORT"))
        assert {p.position_id: p.quantity for p in await a.get_positions()} == {"LONG": D("0.02")}
        with pytest.raises(OrderError) as exc:  # closing more than the long holds
            await a.place_order(fut_t.place(7, side=Side.SELL, qty="0.05", reduce_only=True))
        assert exc.value.code == "-2022"
    finally:
        await a.close()


@pytest.mark.parametrize("fault", ["drop", "hold"])
async def test_spot_protection_with_an_unknown_outcome_is_looked_up_and_sent_once(
    server: BinanceServer, fault: str
) -> None:
    """The OCO request times out: either it never reached Binance (sent again by the next poll) or it was placed and
    only the answer was lost (found by its client order ids, never placed twice)."""
    a = spot_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        (server.drop_next if fault == "drop" else server.hold_next)("orderList/oco", max_s=5)
        cmd = with_(spot_t.place(6, qty="0.01"), stop_loss=D("49000"), take_profit=D("52000"))
        assert (await a.place_order(cmd)).state is FILLED  # the parent is filled; its protection is pending
        server.release()
        await a.poll_working()
        legs = sorted(o.client_order_id for o in server.open_orders())
        assert legs == sorted([cmd.client_order_id + "-sl", cmd.client_order_id + "-tp"])
        posted = server.count_requests("POST", "orderList/oco")
        assert posted == (2 if fault == "drop" else 1)
        views = by_coid(await a.poll_working())
        assert all(v.state is NEW for k, v in views.items() if k in legs)
        assert server.count_requests("POST", "orderList/oco") == posted  # protected: nothing more is sent
    finally:
        await a.close()


@pytest.mark.parametrize("fault", ["drop", "hold"])
async def test_a_futures_stop_whose_placement_timed_out_is_placed_once(server: BinanceServer, fault: str) -> None:
    """The algo order request times out: a retry looks it up by clientAlgoId first and places it only if it never
    arrived; a second adapter that does not know it is answered the existing one (duplicate clientAlgoId)."""
    a = fut_t.make_adapter(server, heartbeat_interval_s=0)
    b = fut_t.make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        (server.drop_next if fault == "drop" else server.hold_next)("fapi/v1/algoOrder", max_s=5)
        cmd = with_(fut_t.place(7, qty="0.01"), order_type=OrderType.STOP, stop_price=D("50500"))
        with pytest.raises(BrokerConnectionError):
            await a.place_order(cmd)
        server.release()
        again = await a.place_order(cmd)  # the command delivered again
        (algo,) = server.futures.algos.values()
        assert (again.state, again.broker_order_id, algo.client_algo_id) == (
            NEW,
            str(algo.algo_id),
            cmd.client_order_id,
        )
        assert server.count_requests("POST", "fapi/v1/algoOrder") == (2 if fault == "drop" else 1)
        other = await b.place_order(cmd)  # -4116: the existing algo order is answered
        assert (other.state, other.broker_order_id) == (NEW, str(algo.algo_id))
        assert len(server.futures.algos) == 1
    finally:
        await a.close()
        await b.close()
