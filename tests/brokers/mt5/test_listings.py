"""The EA's listings read as the stock EA writes them, and the matching rules (pure)."""

from __future__ import annotations

from decimal import Decimal

from ordermesh.brokers.mt5.listings import (
    DealRow,
    OrderRow,
    ServerClock,
    addressable,
    dealing_candidates,
    order_candidates,
    parse_deals,
    parse_orders,
    parse_positions,
    pending_fill_candidates,
    same_ticket,
)
from ordermesh.brokers.mt5.protocol import _json
from ordermesh.brokers.mt5.transport import decode, final_for
from ordermesh.contract.wire import Side

D = Decimal

# HISTORY TRADES as HistoryInfo.mqh writes it: CDealInfo::TypeDescription(), DEAL_TIME (server clock), no order.
HISTORY = (
    b'{"trades":[{"ticket":5000000001,"time":1700007200,"price":0.00000,"volume":0.00000,"symbol":null,'
    b'"type":"Balance type","entry":0,"profit":100000.00000},'
    b'{"ticket":5000000002,"time":1700007260,"price":1.08505,"volume":0.30000,"symbol":"EURUSD",'
    b'"type":"Buy type","entry":0,"profit":0.00000},'
    b'{"ticket":5000000003,"time":1700007300,"price":1.08600,"volume":0.10000,"symbol":"EURUSD",'
    b'"type":"Sell type","entry":1,"profit":9.50000},'
    b'{"ticket":5000000004,"time":"garbage","price":1.0,"volume":0.1,"symbol":"EURUSD","type":"Buy type","entry":0}'
    b"]}"
)


def test_history_rows_use_the_ea_type_descriptions_and_skip_non_trades() -> None:
    deals = parse_deals(_json.decode(HISTORY))
    assert [(d.ticket, d.side, d.volume, d.price, d.entry) for d in deals] == [
        (5000000002, Side.BUY, D("0.3"), D("1.08505"), 0),
        (5000000003, Side.SELL, D("0.1"), D("1.086"), 1),
    ]  # the balance row is not a trade; the unreadable row is skipped, not fatal


def test_an_empty_history_is_an_empty_message() -> None:
    # the EA serializes an untouched CJAVal to nothing: an account with no deals answers ""
    assert decode(b"") == {}
    final = final_for({"action": "HISTORY", "actionType": "TRADES"})
    assert final({}, True)
    assert parse_deals({}) == []


def test_orders_ids_are_strings_and_positions_ids_64_bit() -> None:
    orders = parse_orders(_json.decode(
        b'{"error":false,"orders":[{"id":"4294967301","magic":0,"symbol":"EURUSD","type":"ORDER_TYPE_BUY_LIMIT",'
        b'"time_setup":1700007200,"open":1.08000,"stoploss":1.07000,"takeprofit":0.00000,"volume":0.25000}]}'
    ))  # fmt: skip
    assert [(o.ticket, o.type, o.price, o.stop_loss, o.volume) for o in orders] == [
        (4294967301, "ORDER_TYPE_BUY_LIMIT", D("1.08"), D("1.07"), D("0.25"))
    ]
    assert parse_orders(_json.decode(b'{"error":false,"orders":[]}')) == []


def test_an_empty_positions_listing_has_no_error_key() -> None:
    reply = _json.decode(b'{"positions":[]}')
    assert final_for({"action": "POSITIONS"})(reply, False)
    assert parse_positions(reply) == ([], 0)


def test_the_hedging_listing_repeats_the_lowest_ticket() -> None:
    row = (b'{"id":3000000001,"magic":0,"symbol":"EURUSD","type":"POSITION_TYPE_SELL","time_setup":1,'
           b'"open":1.08500,"stoploss":0.00000,"takeprofit":0.00000,"volume":0.10000}')  # fmt: skip
    rows, repeats = parse_positions(_json.decode(b'{"error":false,"positions":[' + row + b"," + row + b"]}"))
    assert [(p.id, p.side, p.volume) for p in rows] == [(3000000001, Side.SELL, D("0.1"))]
    assert repeats == 1


def test_tickets_compare_modulo_2_32_and_only_32_bit_ones_are_addressable() -> None:
    full = 2**32 + 123
    assert same_ticket(full, 123)
    assert same_ticket(2**31 + 5, -(2**31) + 5)  # the EA's (int) cast of a ticket above 2^31 is negative
    assert not same_ticket(full, 124)
    assert not same_ticket(None, 123)
    assert addressable(2**31 - 1) and not addressable(2**31) and not addressable(full)


def test_errors_before_an_answer_are_not_the_answer() -> None:
    final = final_for({"action": "POSITIONS"})
    err = {"error": True, "lastError": "5040", "description": "Damaged parameter of string type",
           "function": "GetPositions"}  # fmt: skip
    assert not final(err, False)
    trade = final_for({"action": "TRADE", "symbol": "NOPE"})
    assert not trade({"error": True, "lastError": "4301", "function": "TradingModule"}, False)
    assert trade({"error": True, "retcode": 0, "order": 0}, False)
    assert final_for({"action": "CONFIG"})({"error": False, "lastError": "0", "function": "ScriptConfiguration"}, False)
    sync = final_for({"action": "HISTORY", "actionType": "DATA", "symbol": "OMSYNC1"})
    assert sync({"symbol": "OMSYNC1", "timeframe": "M1"}, False)
    assert not sync({"symbol": "OMSYNC0", "timeframe": "M1"}, False)  # an older probe's echo is stale


def test_server_clock_detects_the_offset_from_ticks() -> None:
    clock = ServerClock()
    assert clock.window(1000, 60) == (1000 - 14 * 3600 - 5, 1060 + 14 * 3600)  # unknown: every time zone
    clock.observe_tick((1_700_000_000 + 7200 + 3) * 1000, now_s=1_700_000_000)  # a tick 3 s old, UTC+2
    assert clock.offset_s == 7200
    assert clock.window(1_700_000_000, 60) == (1_700_007_195, 1_700_007_260)
    fixed = ServerClock(10800)
    fixed.observe_tick(1, now_s=5)
    assert fixed.offset_s == 10800


def _deal(ticket: int, side: Side, qty: str, px: str, t: int = 100) -> DealRow:
    return DealRow(ticket=ticket, time_s=t, price=D(px), volume=D(qty), symbol="EURUSD", side=side, entry=0)


def test_matching_rules() -> None:
    deals = [
        _deal(1, Side.BUY, "0.1", "1.0850"),
        _deal(2, Side.BUY, "0.1", "1.0790"),
        _deal(3, Side.SELL, "0.1", "1.09"),
    ]
    same = dealing_candidates(deals, symbol="EURUSD", side=Side.BUY, volume=D("0.1"), window=(0, 200), claimed={1})
    assert [d.ticket for d in same] == [2]
    limit = pending_fill_candidates(deals, symbol="EURUSD", side=Side.BUY, action_type="ORDER_TYPE_BUY_LIMIT",
                                    price=D("1.0800"), remaining=D("0.1"), window=(0, 200), claimed=set())  # fmt: skip
    assert [d.ticket for d in limit] == [2]  # a buy limit fills at its price or lower
    stop = pending_fill_candidates(deals, symbol="EURUSD", side=Side.SELL, action_type="ORDER_TYPE_SELL_STOP",
                                   price=D("1.0950"), remaining=D("0.1"), window=(0, 200), claimed=set())  # fmt: skip
    assert [d.ticket for d in stop] == [3]  # a sell stop fills at its trigger or lower
    late = pending_fill_candidates(deals, symbol="EURUSD", side=Side.BUY, action_type="ORDER_TYPE_BUY_LIMIT",
                                   price=D("1.09"), remaining=D("0.1"), window=(101, 200), claimed=set())  # fmt: skip
    assert late == []  # before the order was placed
    orders = [OrderRow(ticket=2**32 + 9, symbol="EURUSD", type="ORDER_TYPE_BUY_LIMIT", time_s=100, price=D("1.08"),
                       stop_loss=D(0), take_profit=D(0), volume=D("0.25"))]  # fmt: skip
    found = order_candidates(orders, symbol="EURUSD", action_type="ORDER_TYPE_BUY_LIMIT", volume=D("0.25"),
                             price=D("1.08"), window=(0, 200), claimed=set())  # fmt: skip
    assert [o.ticket for o in found] == [2**32 + 9]
    taken = order_candidates(orders, symbol="EURUSD", action_type="ORDER_TYPE_BUY_LIMIT", volume=D("0.25"),
                             price=D("1.08"), window=(0, 200), claimed={9})  # fmt: skip
    assert taken == []  # claimed through its 32-bit value


def test_an_unknown_market_request_takes_a_deal_only_if_every_unlinked_fill_keeps_one() -> None:
    """free_for: market fills named after their order (no deal ticket) each need one deal they may be; an unknown
    request may take a candidate only if they all still get one."""
    from ordermesh.brokers.mt5.reconcile import free_for

    def deal(ticket: int, price: str = "1.1") -> DealRow:
        return DealRow(ticket=ticket, time_s=ticket, price=D(price), volume=D("0.1"), symbol="EURUSD", side=Side.BUY,
                       entry=0)  # fmt: skip

    a, b, c = deal(1), deal(2), deal(3)
    assert free_for([a, b], []) == [a, b]  # no fill competes: two candidates are ambiguous (the caller reports)
    assert free_for([b], [{1, 2}]) == [b]  # the fill can be the older deal, out of the request's window
    assert free_for([a], [{1, 2}, {2}]) == []  # the other fill can only be 2: the first one needs 1
    assert free_for([a, b], [{1, 2}]) == [b]  # interchangeable: same price; the later one
    assert free_for([a, b, c], [{1, 2}]) == [a, b, c]  # a deal too many: one is a stranger's (ambiguous)
    assert free_for([deal(1), deal(2, "1.2")], [{1}, set()]) == [deal(2, "1.2")]
    assert free_for([a], [{1}]) == []  # only the fill's own deal: the request did not execute (yet)
