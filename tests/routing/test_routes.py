from __future__ import annotations

from decimal import Decimal

from ordermesh.contract.wire import Fixed, Intent, OrderRequest, PositionSizingResult, Side
from ordermesh.routing.routes import Route, choose_broker, place_command


def intent(symbol: str = "EURUSD", account: str = "acc", broker_id: str | None = None) -> Intent:
    return Intent(
        intent_id="i1",
        strategy_id="s1",
        account=account,
        symbol=symbol,
        side=Side.BUY,
        sizing=Fixed(qty=Decimal("1")),
        broker_id=broker_id,
    )


ROUTES = [
    Route(account="live-*", symbols="BTC*", broker="binance", failover="paper"),
    Route(symbols="EUR*", broker="mt5"),
]
USABLE = {"paper", "binance", "mt5"}


def healthy_all(_: str) -> bool:
    return True


def test_first_matching_route_wins_then_the_default() -> None:
    assert choose_broker(intent("BTCUSD", "live-1"), ROUTES, "paper", USABLE, healthy_all) == (
        "binance",
        "route live-*/BTC*",
    )
    assert choose_broker(intent("EURUSD", "live-1"), ROUTES, "paper", USABLE, healthy_all) == ("mt5", "route */EUR*")
    assert choose_broker(intent("BTCUSD", "paper-1"), ROUTES, "paper", USABLE, healthy_all) == (
        "paper",
        "default broker",
    )


def test_the_intents_broker_wins_over_routes() -> None:
    assert choose_broker(intent("EURUSD", broker_id="paper"), ROUTES, "paper", USABLE, healthy_all) == (
        "paper",
        "named by the intent",
    )


def test_failover_only_while_the_primary_is_unhealthy_and_the_failover_is_healthy() -> None:
    btc = intent("BTCUSD", "live-1")
    assert choose_broker(btc, ROUTES, "paper", USABLE, lambda b: b != "binance") == (
        "paper",
        "failover from binance (its gateway is unhealthy)",
    )
    # both down: stay on the primary (the gateway will hold the command until it expires)
    assert choose_broker(btc, ROUTES, "paper", USABLE, lambda b: False)[0] == "binance"
    # a route without failover never moves
    assert choose_broker(intent("EURUSD", "live-1"), ROUTES, "paper", USABLE, lambda b: False)[0] == "mt5"


def test_unusable_broker_is_refused_with_the_reason() -> None:
    assert choose_broker(intent("EURUSD"), ROUTES, "paper", {"paper"}, healthy_all) == (
        None,
        "broker 'mt5' (route */EUR*) is not configured or not enabled",
    )
    assert choose_broker(intent(broker_id="nowhere"), [], "paper", USABLE, healthy_all) == (
        None,
        "broker 'nowhere' (named by the intent) is not configured or not enabled",
    )


def test_place_command_carries_the_intent_and_an_expiry() -> None:
    i = intent()
    audit = PositionSizingResult(
        method="fixed", status="ok", account_balance=Decimal(0), risk_amount=Decimal(0), lot_size=Decimal(1)
    )
    cmd = place_command(OrderRequest(intent=i, quantity=Decimal("1"), sizing_audit=audit), "om-x", "paper", 2, 1_000)
    assert (cmd.broker_id, cmd.client_order_id, cmd.command_id) == ("paper", "om-x", "place:om-x")
    assert cmd.command_expires_ns == 1_000 + 2_000_000_000
    assert cmd.intent_ts_ns == i.ts_ns and cmd.quantity == Decimal("1")
