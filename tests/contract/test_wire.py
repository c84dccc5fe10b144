"""The wire contract: round trips, exact decimals, forward compatibility and the codec's failure reasons."""

from __future__ import annotations

import typing
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from ordermesh.contract import codec as codecs
from ordermesh.contract import wire
from ordermesh.contract.codec import BadMessage
from ordermesh.contract.wire import (
    AccountQuery,
    AccountState,
    CancelAll,
    CancelOrder,
    CancelRequest,
    CloseAll,
    ControlReply,
    ErrorReply,
    Fixed,
    Heartbeat,
    Intent,
    IntentRejected,
    Kelly,
    Liquidity,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderRequest,
    OrderTriggered,
    OrderType,
    PlaceOrder,
    Position,
    PositionSizingResult,
    PositionsQuery,
    PositionsReply,
    Quote,
    RegistryReload,
    RejectCategory,
    RiskPct,
    SetTradingState,
    Side,
    TimeInForce,
    TradingState,
    TradingStateQuery,
    UnresolvedQuery,
    UnresolvedReply,
)

TS = 1_700_000_000_123_456_789

_EVENT = dict(
    event_id="e-1",
    client_order_id="c-1",
    intent_id="i-1",
    strategy_id="s1",
    account="paper-1",
    broker_id="paper",
    symbol="EURUSD",
    intent_ts_ns=TS - 5,
    ts_ns=TS,
)


def _intent(sizing: Any = None, **over: Any) -> Intent:
    fields: dict[str, Any] = dict(
        intent_id="i-1",
        strategy_id="s1",
        account="paper-1",
        symbol="EURUSD",
        side=Side.BUY,
        sizing=sizing if sizing is not None else Fixed(qty=Decimal("0.10")),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("1.08500"),
        time_in_force=TimeInForce.GTD,
        expire_at_ns=TS + 10,
        stop_loss=Decimal("1.08000"),
        take_profit=Decimal("1.09000"),
        reference_price=Decimal("1.08510"),
        broker_id="paper",
        tags={"why": "breakout"},
        ts_ns=TS,
    )
    fields.update(over)
    return Intent(**fields)


def _audit() -> PositionSizingResult:
    return PositionSizingResult(
        method="fixed",
        status="ok",
        account_balance=Decimal("100000.00"),
        risk_amount=Decimal("0"),
        lot_size=Decimal("0.10"),
        stop_loss_pips=Decimal("50.0"),
        calculation_steps=["qty=0.10"],
    )


def _samples() -> list[wire.Message]:
    """One populated instance of every type in ``wire.AnyMessage``."""
    return [
        _intent(),
        OrderRequest(intent=_intent(), quantity=Decimal("0.10"), sizing_audit=_audit(), ts_ns=TS),
        PlaceOrder(
            command_id="cmd-1",
            client_order_id="c-1",
            intent_id="i-1",
            strategy_id="s1",
            account="paper-1",
            broker_id="paper",
            symbol="EURUSD",
            side=Side.SELL,
            order_type=OrderType.LIMIT,
            quantity=Decimal("0.10"),
            limit_price=Decimal("1.08500"),
            time_in_force=TimeInForce.IOC,
            reduce_only=True,
            intent_ts_ns=TS - 5,
            command_expires_ns=TS + 30,
            ts_ns=TS,
        ),
        CancelOrder(
            command_id="cmd-2",
            client_order_id="c-1",
            strategy_id="s1",
            account="paper-1",
            broker_id="paper",
            symbol="EURUSD",
            broker_order_id="Pc-1",
            ts_ns=TS,
        ),
        ModifyOrder(
            command_id="cmd-3",
            client_order_id="c-1",
            strategy_id="s1",
            account="paper-1",
            broker_id="paper",
            symbol="EURUSD",
            quantity=Decimal("0.20"),
            limit_price=Decimal("1.08400"),
            ts_ns=TS,
        ),
        OrderAccepted(broker_order_id="Pc-1", **_EVENT),
        OrderRejected(category=RejectCategory.BROKER, reason="BROKER: market closed", broker_code="10018", **_EVENT),
        OrderFilled(
            broker_order_id="Pc-1",
            fill_id="Pc-1-1",
            side=Side.BUY,
            last_qty=Decimal("0.10"),
            last_px=Decimal("1.08505"),
            cum_qty=Decimal("0.10"),
            leaves_qty=Decimal("0.00"),
            order_qty=Decimal("0.10"),
            commission=Decimal("0.70"),
            commission_asset="USD",
            liquidity=Liquidity.MAKER,
            reference_price=Decimal("1.08500"),
            position_id="pos-1",
            **_EVENT,
        ),
        OrderCanceled(broker_order_id="Pc-1", reason="user", **_EVENT),
        OrderExpired(broker_order_id="Pc-1", **_EVENT),
        OrderModified(broker_order_id="Pc-1", quantity=Decimal("0.20"), limit_price=Decimal("1.08400"), **_EVENT),
        OrderTriggered(broker_order_id="Pc-1", **_EVENT),
        OrderCancelRejected(reason="already filled", **_EVENT),
        OrderModifyRejected(reason="price off the tick", **_EVENT),
        IntentRejected(
            intent_id="i-1",
            strategy_id="s1",
            account="paper-1",
            symbol="EURUSD",
            category=RejectCategory.SIZING,
            reason="SIZING: zero size",
            sizing_audit=_audit(),
            ts_ns=TS,
        ),
        OrderDenied(
            intent_id="i-1",
            client_order_id="c-1",
            strategy_id="s1",
            account="paper-1",
            symbol="EURUSD",
            category=RejectCategory.RISK,
            reason="RISK: max position",
            ts_ns=TS,
        ),
        Quote(
            broker_id="paper",
            symbol="EURUSD",
            bid=Decimal("1.08495"),
            ask=Decimal("1.08505"),
            bid_size=Decimal("1000000"),
            ask_size=Decimal("1000000"),
            ts_ns=TS,
        ),
        Heartbeat(
            service="gateway",
            instance="gw-1",
            started_ns=TS - 100,
            broker_id="paper",
            broker_latency_ms=1.5,
            metrics_url="http://127.0.0.1:9310/metrics",
            detail={"k": "v"},
            ts_ns=TS,
        ),
        AccountState(
            account="paper-1",
            balance=Decimal("100000.10"),
            equity=Decimal("100001.20"),
            free_margin=Decimal("99000.00"),
            realized_pnl=Decimal("0.10"),
            applied_seq=42,
            ts_ns=TS,
        ),
        SetTradingState(state=TradingState.HALTED, account="paper-1", reason="drill", ts_ns=TS),
        CloseAll(account="paper-1", strategy_id="s1", ts_ns=TS),
        CancelAll(account="paper-1", ts_ns=TS),
        RegistryReload(ts_ns=TS),
        CancelRequest(account="paper-1", strategy_id="s1", intent_id="i-1", ts_ns=TS),
        TradingStateQuery(ts_ns=TS),
        ControlReply(ok=True, detail="halted", ts_ns=TS),
        PositionsQuery(account="paper-1", by_strategy=True, ts_ns=TS),
        PositionsReply(
            positions=[
                Position(
                    account="paper-1",
                    symbol="EURUSD",
                    quantity=Decimal("-0.10"),
                    avg_price=Decimal("1.08495"),
                    realized_pnl=Decimal("0.10"),
                    strategy_id="s1",
                    fills=3,
                )
            ],
            applied_seq=7,
            fills_applied=3,
            ts_ns=TS,
        ),
        AccountQuery(account="paper-1", ts_ns=TS),
        UnresolvedQuery(ts_ns=TS),
        UnresolvedReply(broker_id="mt5", unresolved={"om-1": ["100000001", "100000002"]}, ts_ns=TS),
        ErrorReply(reason="unknown account", ts_ns=TS),
        wire.EquityPoint(
            account="paper-1", balance=Decimal("100010.5"), equity=Decimal("100020.25"), applied_seq=9, ts_ns=TS
        ),
        wire.BrokerPositionsQuery(broker_id="paper", ts_ns=TS),
        wire.BrokerPositionsReply(
            broker_id="paper",
            positions=[wire.BrokerPositionView(symbol="EURUSD", quantity=Decimal("-0.30"), avg_price=Decimal("1.085"))],
            ts_ns=TS,
        ),
        wire.ReconcileQuery(broker_id="paper", ts_ns=TS),
        wire.ReconciliationReport(
            diffs=[
                wire.PositionDiff(
                    broker_id="paper",
                    symbol="EURUSD",
                    keeper_qty=Decimal("0.1"),
                    broker_qty=Decimal(0),
                    difference=Decimal("0.1"),
                )
            ],
            checked=["paper"],
            applied_seq=9,
            ts_ns=TS,
        ),
    ]


SAMPLES = _samples()
SAMPLE_IDS = [type(m).__name__ for m in SAMPLES]
BY_TYPE: dict[type, Any] = {type(m): m for m in SAMPLES}

#: The codec of each subject family and the message types it must accept.
FAMILIES = [
    (codecs.INTENT_CODEC, {Intent}),
    (codecs.ORDER_CODEC, {OrderRequest}),
    (codecs.COMMAND_CODEC, {PlaceOrder, CancelOrder, ModifyOrder}),
    (
        codecs.EXEC_CODEC,
        {OrderAccepted, OrderRejected, OrderFilled, OrderCanceled, OrderExpired, OrderModified},
    ),
    (
        codecs.REPORT_CODEC,
        {
            OrderAccepted,
            OrderRejected,
            OrderFilled,
            OrderCanceled,
            OrderExpired,
            OrderModified,
            IntentRejected,
            OrderDenied,
        },
    ),
    (codecs.QUOTE_CODEC, {Quote}),
    (codecs.HEARTBEAT_CODEC, {Heartbeat}),
    (codecs.CONTROL_CODEC, {SetTradingState, CloseAll, CancelAll, RegistryReload}),
    (codecs.QUERY_CODEC, {PositionsQuery, AccountQuery}),
]


def _raw(msg: msgspec.Struct) -> dict[str, Any]:
    decoded = msgspec.msgpack.decode(codecs.encode(msg))
    assert isinstance(decoded, dict)
    return decoded


# ------------------------------------------------------------------------------------- round trip


def test_samples_cover_every_wire_message_type() -> None:
    assert {type(m) for m in SAMPLES} == set(typing.get_args(wire.AnyMessage))
    assert len(SAMPLES) == len(typing.get_args(wire.AnyMessage))


@pytest.mark.parametrize("msg", SAMPLES, ids=SAMPLE_IDS)
def test_every_message_round_trips_through_decode_any(msg: wire.Message) -> None:
    decoded = codecs.decode_any(codecs.encode(msg))
    assert type(decoded) is type(msg)
    assert decoded == msg
    assert msgspec.structs.asdict(decoded) == msgspec.structs.asdict(msg)


@pytest.mark.parametrize("msg", SAMPLES, ids=SAMPLE_IDS)
def test_every_message_round_trips_through_its_family_codecs(msg: wire.Message) -> None:
    families = [codec for codec, types in FAMILIES if type(msg) in types]
    for codec in families:
        assert codec.decode(codecs.encode(msg)) == msg


@pytest.mark.parametrize(
    "text",
    ["0.10", "1.08500", "0.00000001", "100000", "-0.10", "123456789012.123456789012345678901234567890", "1E+3"],
)
def test_decimals_travel_exactly_as_strings(text: str) -> None:
    point = wire.EquityPoint(account="a", balance=Decimal(text), equity=Decimal(text), ts_ns=TS)  # signed money
    raw = _raw(point)
    assert raw["balance"] == str(Decimal(text))  # carried as a string, no float rounding
    decoded = codecs.EQUITY_CODEC.decode(codecs.encode(point))
    assert str(decoded.balance) == str(Decimal(text))
    assert decoded.balance.as_tuple() == Decimal(text).as_tuple()


def test_decimal_zero_point_ten_stays_zero_point_ten() -> None:
    quote = Quote(broker_id="paper", symbol="X", bid=Decimal("0.10"), ask=Decimal("0.10"), ts_ns=TS)
    decoded = codecs.decode_any(codecs.encode(quote))
    assert str(decoded.bid) == "0.10"
    assert _raw(quote)["ask"] == "0.10"


def test_decimal_trailing_zero_is_kept_in_nested_messages() -> None:
    req = OrderRequest(intent=_intent(), quantity=Decimal("0.10"), sizing_audit=_audit(), ts_ns=TS)
    decoded = codecs.ORDER_CODEC.decode(codecs.encode(req))
    assert str(decoded.quantity) == "0.10"
    assert isinstance(decoded.intent.sizing, Fixed)
    assert str(decoded.intent.sizing.qty) == "0.10"
    assert str(decoded.sizing_audit.account_balance) == "100000.00"
    assert str(decoded.intent.limit_price) == "1.08500"


def test_enums_travel_as_their_values() -> None:
    raw = _raw(BY_TYPE[PlaceOrder])  # PlaceOrder
    assert raw["side"] == "SELL"
    assert raw["order_type"] == "LIMIT"
    assert raw["time_in_force"] == "IOC"


# ------------------------------------------------------------------------------- the v field


@pytest.mark.parametrize("msg", SAMPLES, ids=SAMPLE_IDS)
def test_v_and_type_are_always_on_the_wire(msg: wire.Message) -> None:
    raw = _raw(msg)
    assert raw["v"] == wire.SCHEMA_VERSION == 1
    assert raw["type"] == type(msg).__struct_config__.tag
    assert raw["ts_ns"] == TS


def test_v_is_on_the_wire_for_a_message_built_with_only_required_fields() -> None:
    raw = _raw(RegistryReload())
    assert raw["v"] == 1
    assert raw["type"] == "registry_reload"
    assert isinstance(raw["ts_ns"], int) and raw["ts_ns"] > 0


# ---------------------------------------------------------------------------- forward compatibility


def test_unknown_fields_are_ignored() -> None:
    intent = _intent()
    data = msgspec.to_builtins(intent)
    data["added_in_a_later_minor"] = {"nested": [1, 2, 3]}
    data["another"] = "x"
    data["sizing"]["future_knob"] = 0.5
    raw = msgspec.msgpack.encode(data)
    assert codecs.INTENT_CODEC.decode(raw) == intent
    assert codecs.decode_any(raw) == intent


def test_unknown_fields_are_ignored_in_every_family() -> None:
    for msg in SAMPLES:
        data = msgspec.to_builtins(msg)
        data["zz_future"] = 1
        raw = msgspec.msgpack.encode(data)
        assert codecs.decode_any(raw) == msg
        for codec, types in FAMILIES:
            if type(msg) in types:
                assert codec.decode(raw) == msg


# ----------------------------------------------------------------------------------- bad messages


def _reason(codec: codecs.Codec[Any], data: bytes) -> BadMessage:
    with pytest.raises(BadMessage) as info:
        codec.decode(data)
    return info.value


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"not msgpack at all",
        codecs.encode(_intent())[:-4],  # truncated
        msgspec.msgpack.encode([1, 2, 3]),  # not a mapping
        msgspec.msgpack.encode("intent"),
    ],
    ids=["empty", "c1", "text", "truncated", "array", "string"],
)
def test_undecodable(data: bytes) -> None:
    exc = _reason(codecs.INTENT_CODEC, data)
    assert exc.reason == "undecodable"
    assert str(exc).startswith("undecodable: ")
    with pytest.raises(BadMessage) as info:
        codecs.decode_any(data)
    assert info.value.reason == "undecodable"


def test_schema_version_of_an_otherwise_valid_message() -> None:
    newer = msgspec.structs.replace(_intent(), v=2)
    exc = _reason(codecs.INTENT_CODEC, codecs.encode(newer))
    assert exc.reason == "schema_version"
    assert exc.detail == "v=2, this reader speaks v=1"


def test_schema_version_wins_when_the_newer_shape_does_not_validate() -> None:
    data = msgspec.to_builtins(_intent())
    data["v"] = 3
    del data["symbol"]  # a v3 writer renamed it; we must say "version", not "invalid"
    data["instrument"] = "EURUSD"
    exc = _reason(codecs.INTENT_CODEC, msgspec.msgpack.encode(data))
    assert exc.reason == "schema_version"
    assert "v=3" in exc.detail
    with pytest.raises(BadMessage) as info:
        codecs.decode_any(msgspec.msgpack.encode(data))
    assert info.value.reason == "schema_version"


def test_schema_version_zero_is_refused() -> None:
    exc = _reason(codecs.QUOTE_CODEC, codecs.encode(msgspec.structs.replace(BY_TYPE[Quote], v=0)))
    assert exc.reason == "schema_version"
    assert "v=0" in exc.detail


@pytest.mark.parametrize(
    ("codec", "msg", "tag"),
    [
        (codecs.INTENT_CODEC, BY_TYPE[Quote], "quote"),
        (codecs.COMMAND_CODEC, BY_TYPE[OrderAccepted], "order_accepted"),
        (codecs.EXEC_CODEC, BY_TYPE[IntentRejected], "intent_rejected"),
        (codecs.QUOTE_CODEC, BY_TYPE[Heartbeat], "heartbeat"),
        (codecs.CONTROL_CODEC, BY_TYPE[PositionsQuery], "positions_query"),
        (codecs.QUERY_CODEC, BY_TYPE[SetTradingState], "set_trading_state"),
    ],
)
def test_wrong_type(codec: codecs.Codec[Any], msg: wire.Message, tag: str) -> None:
    exc = _reason(codec, codecs.encode(msg))
    assert exc.reason == "wrong_type"
    assert exc.detail == f"type={tag!r} is not expected here"


def test_invalid_when_a_required_field_is_missing() -> None:
    data = msgspec.to_builtins(_intent())
    del data["symbol"]
    exc = _reason(codecs.INTENT_CODEC, msgspec.msgpack.encode(data))
    assert exc.reason == "invalid"
    assert "symbol" in exc.detail


def test_invalid_when_a_field_has_the_wrong_type() -> None:
    data = msgspec.to_builtins(BY_TYPE[Quote])
    data["bid"] = [1, 2]
    exc = _reason(codecs.QUOTE_CODEC, msgspec.msgpack.encode(data))
    assert exc.reason == "invalid"
    assert "$.bid" in exc.detail


def test_invalid_decimal_text() -> None:
    data = msgspec.to_builtins(BY_TYPE[Quote])
    data["ask"] = "one point oh"
    exc = _reason(codecs.QUOTE_CODEC, msgspec.msgpack.encode(data))
    assert exc.reason == "invalid"


def test_invalid_enum_value() -> None:
    data = msgspec.to_builtins(_intent())
    data["side"] = "HOLD"
    exc = _reason(codecs.INTENT_CODEC, msgspec.msgpack.encode(data))
    assert exc.reason == "invalid"


def test_unknown_type_tag_is_invalid() -> None:
    exc = _reason(codecs.INTENT_CODEC, msgspec.msgpack.encode({"type": "teleport", "v": 1}))
    assert exc.reason == "invalid"


def test_bad_message_carries_reason_and_detail() -> None:
    exc = BadMessage("invalid", "boom")
    assert exc.reason == "invalid"
    assert exc.detail == "boom"
    assert str(exc) == "invalid: boom"


# ------------------------------------------------------------------------------------- sizing union


@pytest.mark.parametrize(
    ("sizing", "kind"),
    [
        (Fixed(qty=Decimal("0.10")), "fixed"),
        (
            Kelly(
                win_rate=0.55,
                avg_win=Decimal("120.50"),
                avg_loss=Decimal("80.25"),
                stop_loss_pips=Decimal("25.0"),
                current_atr=Decimal("0.00120"),
                average_atr=Decimal("0.00100"),
                regime_quality=0.8,
                commission_per_lot=Decimal("7.00"),
                spread_pips=Decimal("0.8"),
                trade_count=42,
            ),
            "kelly",
        ),
        (RiskPct(risk_pct=Decimal("0.01"), stop_loss_pips=Decimal("30")), "risk_pct"),
    ],
    ids=["fixed", "kelly", "risk_pct"],
)
def test_sizing_union_is_tagged_by_kind(sizing: Any, kind: str) -> None:
    intent = _intent(sizing=sizing)
    raw = _raw(intent)
    assert raw["sizing"]["kind"] == kind
    decoded = codecs.INTENT_CODEC.decode(codecs.encode(intent))
    assert type(decoded.sizing) is type(sizing)
    assert decoded.sizing == sizing
    # the union decodes on its own, too
    alone = msgspec.msgpack.decode(msgspec.msgpack.encode(sizing), type=wire.SizingRequest)
    assert alone == sizing


def test_kelly_defaults() -> None:
    raw = {
        "kind": "kelly",
        "win_rate": 0.5,
        "avg_win": "2",
        "avg_loss": "1",
        "stop_loss_pips": "10",
        "current_atr": "1",
        "average_atr": "1",
    }
    k = msgspec.msgpack.decode(msgspec.msgpack.encode(raw), type=wire.SizingRequest)
    assert isinstance(k, Kelly)
    assert k.regime_quality == 1.0
    assert k.commission_per_lot == Decimal(0)
    assert k.spread_pips == Decimal(0)
    assert k.trade_count is None
    assert k.avg_win == Decimal("2")


def test_unknown_sizing_kind_is_invalid() -> None:
    data = msgspec.to_builtins(_intent())
    data["sizing"] = {"kind": "martingale", "qty": "1"}
    exc = _reason(codecs.INTENT_CODEC, msgspec.msgpack.encode(data))
    assert exc.reason == "invalid"


def test_sizing_fields_of_another_kind_do_not_validate() -> None:
    data = msgspec.to_builtins(_intent())
    data["sizing"] = {"kind": "risk_pct", "qty": "0.10"}  # Fixed's field under RiskPct's tag
    exc = _reason(codecs.INTENT_CODEC, msgspec.msgpack.encode(data))
    assert exc.reason == "invalid"


# --------------------------------------------------------------------------------------- misc


def test_side_sign_and_opposite() -> None:
    assert Side.BUY.sign == 1
    assert Side.SELL.sign == -1
    assert Side.BUY.opposite is Side.SELL
    assert Side.SELL.opposite is Side.BUY


def test_messages_are_frozen() -> None:
    q = BY_TYPE[Quote]
    with pytest.raises(AttributeError):
        q.bid = Decimal("2")  # type: ignore[misc]


def test_ts_ns_defaults_to_now() -> None:
    before = wire.now_ns()
    msg = ErrorReply(reason="x")
    after = wire.now_ns()
    assert before <= msg.ts_ns <= after
    assert msg.v == 1


def test_terminal_events() -> None:
    assert (OrderRejected, OrderCanceled, OrderExpired) == wire.TERMINAL_EVENTS


# --------------------------------------------------------------------------------- extreme values


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity", "1e999999", "-1e999999", "1e300", "1E+16"])
def test_non_finite_or_huge_decimals_are_refused_at_the_edge(value: str) -> None:
    # A fill with last_px NaN made an account's equity NaN for good; last_qty 1e999999 killed the keeper.
    data = msgspec.to_builtins(BY_TYPE[OrderFilled])
    data["last_px"] = value
    with pytest.raises(BadMessage) as info:
        codecs.EXEC_CODEC.decode(msgspec.msgpack.encode(data))
    assert info.value.reason == "invalid" and "last_px" in info.value.detail
    intent = msgspec.to_builtins(_intent())
    intent["sizing"]["qty"] = value
    with pytest.raises(BadMessage, match="qty"):
        codecs.INTENT_CODEC.decode(msgspec.msgpack.encode(intent))


def test_building_a_message_with_an_extreme_value_is_refused_too() -> None:
    with pytest.raises(ValueError, match="qty"):
        Fixed(qty=Decimal("1e999999"))
    with pytest.raises(ValueError, match="bid"):
        Quote(broker_id="b", symbol="EURUSD", bid=Decimal("NaN"), ask=Decimal(1))
    assert Fixed(qty=Decimal("999999999999999")).qty == Decimal("999999999999999")  # below 1e15 is fine


@pytest.mark.parametrize(
    ("typ", "field", "codec"),
    [
        (OrderFilled, "last_qty", codecs.EXEC_CODEC),
        (OrderFilled, "last_px", codecs.EXEC_CODEC),
        (OrderFilled, "cum_qty", codecs.EXEC_CODEC),
        (PlaceOrder, "quantity", codecs.COMMAND_CODEC),
        (PlaceOrder, "limit_price", codecs.COMMAND_CODEC),
        (OrderRequest, "quantity", codecs.ORDER_CODEC),
        (Quote, "bid", codecs.QUOTE_CODEC),
    ],
)
def test_quantities_and_prices_of_orders_fills_and_quotes_are_never_negative(
    typ: type, field: str, codec: codecs.Codec[Any]
) -> None:
    data = msgspec.to_builtins(BY_TYPE[typ])
    data[field] = "-0.01"
    with pytest.raises(BadMessage) as info:
        codec.decode(msgspec.msgpack.encode(data))
    assert info.value.reason == "invalid" and f"{field} must not be negative" in info.value.detail
    with pytest.raises(ValueError, match=f"{field} must not be negative"):
        msgspec.structs.replace(BY_TYPE[typ], **{field: Decimal("-0.01")})
    data[field] = "0"  # zero is a value (an empty book's bid, nothing filled yet); the consumers judge it
    assert getattr(codec.decode(msgspec.msgpack.encode(data)), field) == 0


def test_signed_figures_stay_signed() -> None:
    # positions, money and an intent's own prices (the sizer answers a negative limit with a readable refusal)
    assert Position(account="a", symbol="X", quantity=Decimal("-2"), avg_price=Decimal(1)).quantity == -2
    assert BY_TYPE[OrderFilled].commission is not None
    assert msgspec.structs.replace(BY_TYPE[OrderFilled], commission=Decimal("-0.5")).commission == Decimal("-0.5")
    assert _intent(order_type=OrderType.LIMIT, limit_price=Decimal(-1)).limit_price == -1


def test_names_longer_than_an_id_are_refused_on_decode() -> None:
    intent = msgspec.to_builtins(_intent())
    intent["strategy_id"] = "s" * (wire.MAX_NAME_LENGTH + 1)
    with pytest.raises(BadMessage) as info:
        codecs.INTENT_CODEC.decode(msgspec.msgpack.encode(intent))
    assert info.value.reason == "invalid" and "strategy_id" in info.value.detail
    intent["strategy_id"] = "s" * wire.MAX_NAME_LENGTH
    assert codecs.INTENT_CODEC.decode(msgspec.msgpack.encode(intent)).strategy_id == intent["strategy_id"]


def test_a_message_that_does_not_decode_can_still_name_its_sender() -> None:
    intent = msgspec.to_builtins(_intent())
    intent["sizing"]["qty"] = "1e999999"
    fields = codecs.loose_fields(msgspec.msgpack.encode(intent))
    assert codecs.texts(fields, "intent_id", "strategy_id") == ("i-1", "s1")
    assert codecs.texts(fields, "intent_id", "nothing") is None
    assert codecs.texts({"intent_id": 7}, "intent_id") is None
    assert codecs.texts({"intent_id": "x" * 300}, "intent_id") is None  # too long to be an id
    assert codecs.text({"symbol": "y" * 300}, "symbol") == "y" * wire.MAX_NAME_LENGTH
    assert codecs.text({"symbol": 1}, "symbol") == ""
    for junk in (b"", b"\xc1", b"\x93\x01\x02\x03", "é".encode(), bytes(range(256))):
        assert codecs.loose_fields(junk) == {}
