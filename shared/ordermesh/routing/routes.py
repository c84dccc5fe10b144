"""Routing: which broker an order goes to, and the command that sends it there.

Rules map (account pattern, symbol pattern) to a broker id, first match wins; the intent's own ``broker_id``
wins over every rule, and ``router.default_broker`` takes what no rule matches. A rule's ``failover`` broker is
used only while the primary's gateway is unhealthy, and only for a new order: an order already sent is never
routed again.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection

import msgspec

from ordermesh.contract.ids import place_command_id
from ordermesh.contract.wire import Fence, Intent, OrderDenied, OrderRequest, PlaceOrder, RejectCategory


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    broker: str
    account: str = "*"
    symbols: str = "*"
    failover: str | None = None

    def matches(self, account: str, symbol: str) -> bool:
        return fnmatch.fnmatchcase(account, self.account) and fnmatch.fnmatchcase(symbol, self.symbols)


def choose_broker(
    intent: Intent,
    routes: list[Route],
    default_broker: str,
    usable: Collection[str],
    healthy: Callable[[str], bool],
) -> tuple[str | None, str]:
    """(broker_id, how it was chosen) or (None, why there is none)."""
    if intent.broker_id is not None:
        primary, failover, how = intent.broker_id, None, "named by the intent"
    else:
        route = next((r for r in routes if r.matches(intent.account, intent.symbol)), None)
        if route is None:
            primary, failover, how = default_broker, None, "default broker"
        else:
            primary, failover = route.broker, route.failover
            how = f"route {route.account}/{route.symbols}"
    if primary not in usable:
        return None, f"broker {primary!r} ({how}) is not configured or not enabled"
    if failover is not None and not healthy(primary) and failover in usable and healthy(failover):
        return failover, f"failover from {primary} (its gateway is unhealthy)"
    return primary, how


def deny(req: OrderRequest, coid: str, category: RejectCategory, detail: str) -> OrderDenied:
    i = req.intent
    return OrderDenied(
        intent_id=i.intent_id,
        client_order_id=coid,
        strategy_id=i.strategy_id,
        account=i.account,
        symbol=i.symbol,
        category=category,
        reason=f"{category.value}: {detail}",
        intent_ts_ns=i.ts_ns,
    )


def place_command(
    req: OrderRequest, coid: str, broker_id: str, ttl_s: float, now_ns: int, fence: Fence | None = None
) -> PlaceOrder:
    i = req.intent
    return PlaceOrder(
        command_id=place_command_id(coid),
        client_order_id=coid,
        intent_id=i.intent_id,
        strategy_id=i.strategy_id,
        account=i.account,
        broker_id=broker_id,
        symbol=i.symbol,
        side=i.side,
        order_type=i.order_type,
        quantity=req.quantity,
        limit_price=i.limit_price,
        stop_price=i.stop_price,
        time_in_force=i.time_in_force,
        expire_at_ns=i.expire_at_ns,
        reduce_only=i.reduce_only,
        stop_loss=i.stop_loss,
        take_profit=i.take_profit,
        reference_price=i.reference_price,
        intent_ts_ns=i.ts_ns,
        command_expires_ns=now_ns + int(ttl_s * 1e9),
        ts_ns=now_ns,
        position_id=i.position_id,
        fence=fence,
    )
