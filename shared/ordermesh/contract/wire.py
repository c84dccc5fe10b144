"""The wire contract: every message that crosses NATS.

Frozen, keyword-only msgspec Structs encoded as msgpack. Each subject family has one tagged union (tag field
``type``); unknown fields are ignored on decode so older readers accept newer writers of the same schema
version. Prices, quantities and money are ``Decimal`` (msgpack carries them as strings, so nothing is rounded
on the way). Every message carries ``ts_ns`` (creation time, ``time.time_ns()``) and the ids of its causal chain
(intent_id -> client_order_id -> broker_order_id -> fill_id).
"""

from __future__ import annotations

import enum
import time
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Final

import msgspec

#: Major schema version. A reader refuses messages of another major version (they may change meaning);
#: additive changes keep the version because unknown fields are ignored.
SCHEMA_VERSION: Final = 1


def now_ns() -> int:
    return time.time_ns()


# --------------------------------------------------------------------------------------------- enums


class Side(enum.Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.Enum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(enum.Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    DAY = "DAY"
    GTD = "GTD"


class OrderStatus(enum.Enum):
    INITIALIZED = "INITIALIZED"
    DENIED = "DENIED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_CANCEL = "PENDING_CANCEL"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    TRIGGERED = "TRIGGERED"


class RejectCategory(enum.Enum):
    """One enum for every refusal; the message's ``reason`` holds the detail (``CATEGORY: detail``)."""

    INVALID = "INVALID"  # the request itself is malformed or inconsistent
    SIZING = "SIZING"  # the sizer produced no tradable quantity
    RISK = "RISK"  # a pre-trade risk rule said no
    TRADING_STATE = "TRADING_STATE"  # halted / reducing
    ROUTING = "ROUTING"  # no broker for the order
    INSTRUMENT = "INSTRUMENT"  # unknown or untradable symbol
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    EXPIRED = "EXPIRED"  # the command or order expired before it could be acted on
    BROKER = "BROKER"  # the broker refused
    INTERNAL = "INTERNAL"  # our own fault; counted and alerted


class Liquidity(enum.Enum):
    MAKER = "MAKER"
    TAKER = "TAKER"


class TradingState(enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


# ------------------------------------------------------------------------------------------- base

#: No price, quantity or amount on the wire reaches this magnitude; NaN and infinities are refused too. Checked
#: when a message is built or decoded, so such a value never enters any state (a fill at NaN once made an
#: account's equity NaN for good; a quantity of 1e999999 killed the keeper on a decimal overflow).
MAX_MAGNITUDE: Final = Decimal("1e15")
_DECIMAL_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}

#: Ids and names (intent, strategy, account, symbol, broker, order, fill ...) are at most this long on decode: they
#: become subject tokens, message ids and keys of the books. Escaped (up to 12 characters each) two of them still
#: fit a subject in NATS's 4 KB control line; a huge one broke publishing and the keeper's snapshot.
MAX_NAME_LENGTH: Final = 128
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_LENGTH)]


def _decimal_fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, must not be negative) of each Decimal field of ``cls``."""
    found = _DECIMAL_FIELDS.get(cls)
    if found is None:
        unsigned: frozenset[str] = getattr(cls, "_unsigned", frozenset())
        found = _DECIMAL_FIELDS[cls] = tuple(
            (f.name, f.name in unsigned)
            for f in msgspec.structs.fields(cls)  # type: ignore[arg-type]
            if "Decimal" in str(f.type)
        )
    return found


class Checked(msgspec.Struct, frozen=True):
    """A Struct whose Decimal fields are finite and below :data:`MAX_MAGNITUDE` (a decode error otherwise); the
    fields a class names in ``_unsigned`` (the quantities and prices of orders, commands, fills and quotes) are
    not negative either."""

    _unsigned: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        for name, unsigned in _decimal_fields(type(self)):
            value = getattr(self, name)
            if isinstance(value, Decimal):
                if not (value.is_finite() and abs(value) < MAX_MAGNITUDE):
                    raise ValueError(f"{name} must be a finite number below 1e15, not {value}")
                if unsigned and value < 0:
                    raise ValueError(f"{name} must not be negative, not {value}")


#: The quantities and prices of an order (commands and their reports): never negative on the wire.
_ORDER_UNSIGNED: Final = frozenset(
    {"quantity", "limit_price", "stop_price", "stop_loss", "take_profit", "reference_price"}
)


class Message(Checked, frozen=True, kw_only=True, tag_field="type"):
    """Base of every wire message: schema version and creation time.

    Defaults are not omitted on the wire: ``v`` must always travel, or a newer writer whose default is
    another version would read as this one.
    """

    v: int = SCHEMA_VERSION
    ts_ns: int = msgspec.field(default_factory=now_ns)


# -------------------------------------------------------------------------------- sizing requests


class Fixed(Checked, frozen=True, kw_only=True, tag_field="kind", tag="fixed"):
    """Trade exactly ``qty`` lots/units."""

    qty: Decimal


class Kelly(Checked, frozen=True, kw_only=True, tag_field="kind", tag="kelly"):
    """Size with the Enhanced Kelly engine from the strategy's own statistics.

    win_rate and regime_quality are statistics (floats); money and distances stay Decimal.
    """

    win_rate: float
    avg_win: Decimal
    avg_loss: Decimal
    stop_loss_pips: Decimal
    current_atr: Decimal
    average_atr: Decimal
    regime_quality: float = 1.0
    commission_per_lot: Decimal = Decimal(0)
    spread_pips: Decimal = Decimal(0)
    trade_count: int | None = None


class RiskPct(Checked, frozen=True, kw_only=True, tag_field="kind", tag="risk_pct"):
    """Risk ``risk_pct`` of the balance (0.01 = 1 %) with the stop ``stop_loss_pips`` away."""

    risk_pct: Decimal
    stop_loss_pips: Decimal


SizingRequest = Fixed | Kelly | RiskPct


class PositionSizingResult(Checked, frozen=True, kw_only=True):
    """The sizing audit attached to every order: the numbers and the readable steps that produced them.

    Money is in ``currency`` (the account's). ``risk_amount`` is the money lost if the stop is hit with
    ``lot_size`` lots (``lot_size * stop_loss_pips * pip_value``), never above ``max_risk_amount``;
    ``risk_budget`` is what the method aimed at before lot rounding. Fixed sizes carry no stop or pip value and
    a risk amount of 0 (not computed).

    The seed's rules (balance >= 100 and <= 1e9, risk and lots >= 0, stop and pip value > 0, margins >= 0) are
    checked by :meth:`validate` / :meth:`problems`, not on construction: an audit is informational and a reader
    must never refuse an order because of it. The sizer validates every risk-based audit it produces.
    """

    method: str
    status: str
    account_balance: Decimal
    risk_amount: Decimal
    stop_loss_pips: Decimal | None = None
    pip_value: Decimal | None = None
    lot_size: Decimal
    estimated_margin: Decimal | None = None
    remaining_margin: Decimal | None = None
    calculation_steps: list[str] = msgspec.field(default_factory=list)
    currency: str = "USD"
    symbol: Name | None = None
    risk_budget: Decimal | None = None
    max_risk_amount: Decimal | None = None
    kelly_f: Decimal | None = None
    base_kelly_f: Decimal | None = None

    # -- validation (the seed's rules and messages)

    def problems(self) -> list[str]:
        out = []
        if self.account_balance < 100:
            out.append(f"account_balance ({self.account_balance}) too low, minimum $100")
        elif self.account_balance > Decimal("1e9"):
            out.append(f"account_balance ({self.account_balance}) unrealistically high")
        if self.risk_amount < 0:
            out.append(f"risk_amount ({self.risk_amount}) cannot be negative")
        if self.lot_size < 0:
            out.append(f"lot_size ({self.lot_size}) cannot be negative")
        for name in ("stop_loss_pips", "pip_value"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                out.append(f"{name} ({value}) must be positive")
        for name in ("estimated_margin", "remaining_margin"):
            value = getattr(self, name)
            if value is not None and value < 0:
                out.append(f"{name} ({value}) cannot be negative")
        return out

    def validate(self) -> PositionSizingResult:
        """Self, or ValueError with every rule broken (one per line)."""
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived figures

    def risk_percentage(self) -> Decimal:
        """Risk as a fraction of the balance (0.02 = 2 %)."""
        if self.account_balance == 0:
            return Decimal(0)
        return self.risk_amount / self.account_balance

    def risk_per_lot(self) -> Decimal | None:
        """Money lost per lot at the stop; None for a sizing without a stop."""
        if self.stop_loss_pips is None or self.pip_value is None:
            return None
        return self.stop_loss_pips * self.pip_value

    def margin_utilization_pct(self) -> Decimal | None:
        """Estimated margin as a fraction of the balance (0 to 1), None when not estimated."""
        if self.estimated_margin is None or self.account_balance == 0:
            return None
        return self.estimated_margin / self.account_balance

    def validate_margin_sufficiency(self) -> bool:
        """True if margin is left after the position (or it could not be estimated)."""
        if self.remaining_margin is None:
            return True
        return self.remaining_margin > 0

    def is_zero_position(self) -> bool:
        return self.lot_size == 0

    def add_step(self, step: str) -> PositionSizingResult:
        """A copy with ``step`` appended to the audit (messages are frozen; the original is unchanged)."""
        return msgspec.structs.replace(self, calculation_steps=[*self.calculation_steps, step])

    # -- presentation

    def get_calculation_summary(self) -> str:
        """A multi-line report for a human to check the numbers."""
        ccy = self.currency
        lines = [
            f"Position Sizing Calculation ({self.method}, {self.status})" + (f" {self.symbol}" if self.symbol else ""),
            "=" * 40,
            f"Account Balance: {self.account_balance:,.2f} {ccy}",
            f"Risk Amount: {self.risk_amount:,.2f} {ccy} ({self.risk_percentage() * 100:.2f}%)",
        ]
        if self.max_risk_amount is not None:
            lines.append(f"Risk Cap: {self.max_risk_amount:,.2f} {ccy}")
        if self.stop_loss_pips is not None:
            lines.append(f"Stop Loss: {self.stop_loss_pips:.1f} pips")
        if self.pip_value is not None:
            lines.append(f"Pip Value: {self.pip_value:,.4f} {ccy} per lot")
        per_lot = self.risk_per_lot()
        if per_lot is not None:
            lines.append(f"Risk per Lot: {per_lot:,.2f} {ccy}")
        lines += ["-" * 40, f"Position Size: {self.lot_size} lots"]
        if self.estimated_margin is not None:
            lines.append(f"Estimated Margin: {self.estimated_margin:,.2f} {ccy}")
        if self.remaining_margin is not None:
            lines.append(f"Remaining Margin: {self.remaining_margin:,.2f} {ccy}")
        if self.calculation_steps:
            lines += ["-" * 40, "Calculation Steps:"]
            lines += [f"  {i}. {step}" for i, step in enumerate(self.calculation_steps, 1)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The figures as a dict (Decimals stay exact), with the risk percentage."""
        return {
            "method": self.method,
            "status": self.status,
            "currency": self.currency,
            "account_balance": self.account_balance,
            "risk_amount": self.risk_amount,
            "risk_percentage": self.risk_percentage(),
            "stop_loss_pips": self.stop_loss_pips,
            "pip_value": self.pip_value,
            "lot_size": self.lot_size,
            "estimated_margin": self.estimated_margin,
            "remaining_margin": self.remaining_margin,
            "calculation_steps": list(self.calculation_steps),
        }

    def model_dump_json_safe(self) -> str:
        """JSON text without the absent (None) fields; Decimals as strings, so nothing is rounded."""
        return msgspec.json.encode({k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}).decode()


# ------------------------------------------------------------------------- strategy -> sizer -> router


class Intent(Message, frozen=True, kw_only=True, tag="intent"):
    """A strategy's wish to trade; sized by the sizer into an OrderRequest. ``intent_id`` is the dedupe key."""

    intent_id: Name
    strategy_id: Name
    account: Name
    symbol: Name
    side: Side
    sizing: SizingRequest
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_at_ns: int | None = None  # GTD
    reduce_only: bool = False
    stop_loss: Decimal | None = None  # absolute price, attached on fill
    take_profit: Decimal | None = None
    reference_price: Decimal | None = None  # the quote the strategy decided on (slippage baseline)
    broker_id: Name | None = None  # explicit route; otherwise the router's rules decide
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    #: Close this broker position (hedging accounts): the ticket of the position the order reduces.
    position_id: Name | None = None


class OrderRequest(Message, frozen=True, kw_only=True, tag="order_request"):
    """A sized intent, sizer -> router. Carries the intent whole, so the causal chain travels with it."""

    _unsigned: ClassVar[frozenset[str]] = frozenset({"quantity"})

    intent: Intent
    quantity: Decimal
    sizing_audit: PositionSizingResult


# ----------------------------------------------------------------------------- router -> gateway


class Fence(msgspec.Struct, frozen=True, kw_only=True):
    """The lease a command was sent under (``ordermesh.platform.lease``): its KV ``om_leases`` key and the token
    of its holder's tenure (the revision that created it; a later owner's is always higher). A gateway refuses a
    command whose token is lower than the highest it has seen for that lease: a router that lost its partition
    cannot place an order."""

    lease: Name
    token: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class PlaceOrder(Message, frozen=True, kw_only=True, tag="place_order"):
    _unsigned: ClassVar[frozenset[str]] = _ORDER_UNSIGNED

    command_id: Name
    client_order_id: Name
    intent_id: Name
    strategy_id: Name
    account: Name
    broker_id: Name
    symbol: Name
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_at_ns: int | None = None
    reduce_only: bool = False
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    reference_price: Decimal | None = None
    intent_ts_ns: int = 0
    #: A gateway that sees the command after this time refuses it: no stale orders after an outage.
    command_expires_ns: int | None = None
    #: Close this broker position (hedging accounts); venues without tickets (paper) ignore it.
    position_id: Name | None = None
    fence: Fence | None = None


class CancelOrder(Message, frozen=True, kw_only=True, tag="cancel_order"):
    command_id: Name
    client_order_id: Name
    intent_id: Name = ""
    strategy_id: Name
    account: Name
    broker_id: Name
    symbol: Name
    broker_order_id: Name | None = None
    command_expires_ns: int | None = None
    fence: Fence | None = None


class ModifyOrder(Message, frozen=True, kw_only=True, tag="modify_order"):
    _unsigned: ClassVar[frozenset[str]] = _ORDER_UNSIGNED

    command_id: Name
    client_order_id: Name
    intent_id: Name = ""
    strategy_id: Name
    account: Name
    broker_id: Name
    symbol: Name
    broker_order_id: Name | None = None
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    command_expires_ns: int | None = None
    fence: Fence | None = None


Command = PlaceOrder | CancelOrder | ModifyOrder


# --------------------------------------------------------------------- gateway -> router/keeper/strategy


class OrderEvent(Message, frozen=True, kw_only=True):
    """Fields common to every execution report. ``event_id`` is the JetStream dedupe key."""

    event_id: Name
    client_order_id: Name
    intent_id: Name
    strategy_id: Name
    account: Name
    broker_id: Name
    symbol: Name
    intent_ts_ns: int = 0
    #: Set on orders the venue created for one of ours (an attached stop-loss / take-profit): the order it protects.
    parent_client_order_id: Name | None = None


class OrderAccepted(OrderEvent, frozen=True, kw_only=True, tag="order_accepted"):
    broker_order_id: Name


class OrderRejected(OrderEvent, frozen=True, kw_only=True, tag="order_rejected"):
    category: RejectCategory
    reason: str
    broker_code: str | None = None


class OrderFilled(OrderEvent, frozen=True, kw_only=True, tag="order_filled"):
    """One fill (one trade at the venue). ``fill_id`` is the broker's trade/deal id, unique per broker."""

    _unsigned: ClassVar[frozenset[str]] = frozenset({"last_qty", "last_px", "cum_qty", "order_qty", "reference_price"})

    broker_order_id: Name
    fill_id: Name
    side: Side
    last_qty: Decimal
    last_px: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal
    order_qty: Decimal
    commission: Decimal = Decimal(0)
    commission_asset: str | None = None
    liquidity: Liquidity = Liquidity.TAKER
    reference_price: Decimal | None = None
    position_id: Name | None = None
    #: Cost against ``reference_price`` in basis points (positive: worse than the reference); venues that know it.
    slippage_bps: Decimal | None = None


class OrderCanceled(OrderEvent, frozen=True, kw_only=True, tag="order_canceled"):
    broker_order_id: Name | None = None
    reason: str = ""


class OrderExpired(OrderEvent, frozen=True, kw_only=True, tag="order_expired"):
    broker_order_id: Name | None = None


class OrderModified(OrderEvent, frozen=True, kw_only=True, tag="order_modified"):
    _unsigned: ClassVar[frozenset[str]] = _ORDER_UNSIGNED

    broker_order_id: Name | None = None
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


class OrderTriggered(OrderEvent, frozen=True, kw_only=True, tag="order_triggered"):
    """A STOP / STOP_LIMIT order's trigger price was reached; it now works as a market / limit order."""

    broker_order_id: Name | None = None


class OrderCancelRejected(OrderEvent, frozen=True, kw_only=True, tag="order_cancel_rejected"):
    """The broker refused a cancel (typically: already filled). The order keeps its previous state."""

    reason: str


class OrderModifyRejected(OrderEvent, frozen=True, kw_only=True, tag="order_modify_rejected"):
    reason: str


ExecEvent = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderExpired
    | OrderModified
    | OrderTriggered
    | OrderCancelRejected
    | OrderModifyRejected
)

#: Events after which the order does nothing more (a late fill after CANCELED can still follow).
TERMINAL_EVENTS: Final = (OrderRejected, OrderCanceled, OrderExpired)


# ---------------------------------------------------------------------- refusals before the broker


class IntentRejected(Message, frozen=True, kw_only=True, tag="intent_rejected"):
    """The sizer refused an intent (zero size, blocked, invalid request)."""

    intent_id: Name
    strategy_id: Name
    account: Name
    symbol: Name
    category: RejectCategory
    reason: str
    intent_ts_ns: int = 0
    sizing_audit: PositionSizingResult | None = None


class OrderDenied(Message, frozen=True, kw_only=True, tag="order_denied"):
    """The router refused a sized order before it reached a broker (risk, trading state, routing)."""

    intent_id: Name
    client_order_id: Name
    strategy_id: Name
    account: Name
    symbol: Name
    category: RejectCategory
    reason: str
    intent_ts_ns: int = 0


Refusal = IntentRejected | OrderDenied

#: Everything a strategy hears about its own intents.
Report = ExecEvent | Refusal


# ------------------------------------------------------------------------- market data and health


class Quote(Message, frozen=True, kw_only=True, tag="quote"):
    _unsigned: ClassVar[frozenset[str]] = frozenset({"bid", "ask", "bid_size", "ask_size"})

    broker_id: Name
    symbol: Name
    bid: Decimal
    ask: Decimal
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None


class Heartbeat(Message, frozen=True, kw_only=True, tag="heartbeat"):
    service: Name
    instance: Name
    started_ns: int
    connected: bool = True  # for a gateway: connected to its broker
    broker_id: Name | None = None
    broker_latency_ms: float | None = None
    metrics_url: str | None = None
    detail: dict[str, str] = msgspec.field(default_factory=dict)


# -------------------------------------------------------------------------------- books and state


class Position(Checked, frozen=True, kw_only=True):
    account: Name
    symbol: Name
    quantity: Decimal  # signed: long > 0, short < 0
    avg_price: Decimal
    realized_pnl: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)
    strategy_id: Name | None = None  # None: the account-level view
    fills: int = 0
    position_id: Name | None = None  # hedging accounts: the ticket
    swap: Decimal = Decimal(0)  # account currency
    mark_price: Decimal | None = None  # the latest bid (long) or ask (short), when a quote is known
    unrealized_pnl: Decimal = Decimal(0)  # quote currency, at mark_price


class AccountState(Message, frozen=True, kw_only=True, tag="account_state"):
    account: Name
    currency: str = "USD"
    balance: Decimal
    equity: Decimal
    margin_used: Decimal = Decimal(0)
    free_margin: Decimal
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)
    applied_seq: int = 0
    swap: Decimal = Decimal(0)
    deposit: Decimal = Decimal(0)
    fills: int = 0
    mode: str = "netting"
    #: currencies or symbols without a quote: their amounts are not in the figures above
    unpriced: list[str] = msgspec.field(default_factory=list)


class EquityPoint(Message, frozen=True, kw_only=True, tag="equity_point"):
    """One point of an account's equity curve (stream ``OM_EQUITY``, ``om.equity.<account>``)."""

    account: Name
    currency: str = "USD"
    balance: Decimal
    equity: Decimal
    unrealized_pnl: Decimal = Decimal(0)
    margin_used: Decimal = Decimal(0)
    free_margin: Decimal = Decimal(0)
    applied_seq: int = 0
    fills_applied: int = 0
    reason: str = "fill"  # fill | interval


class BrokerPositionView(Checked, frozen=True, kw_only=True):
    symbol: Name
    quantity: Decimal  # signed
    avg_price: Decimal = Decimal(0)
    position_id: Name | None = None


class BrokerPositionsQuery(Message, frozen=True, kw_only=True, tag="broker_positions_query"):
    """Asked of a gateway on ``om.q.broker_positions.<broker_id>``: what its broker says it holds."""

    broker_id: Name


class BrokerPositionsReply(Message, frozen=True, kw_only=True, tag="broker_positions_reply"):
    broker_id: Name
    positions: list[BrokerPositionView] = msgspec.field(default_factory=list)


class PositionDiff(Checked, frozen=True, kw_only=True):
    broker_id: Name
    symbol: Name
    keeper_qty: Decimal
    broker_qty: Decimal
    difference: Decimal  # keeper - broker


class ReconcileQuery(Message, frozen=True, kw_only=True, tag="reconcile_query"):
    """Asked of the keeper on ``om.q.reconcile``: compare its positions with every gateway's broker now."""

    broker_id: Name | None = None  # None: every configured broker


class ReconciliationReport(Message, frozen=True, kw_only=True, tag="reconciliation_report"):
    """The keeper's net quantity per (broker, symbol) against the broker's; published on
    ``om.recon.<broker_id>`` when a difference is found, and the answer to ``ReconcileQuery``."""

    diffs: list[PositionDiff] = msgspec.field(default_factory=list)
    checked: list[str] = msgspec.field(default_factory=list)  # brokers that answered
    errors: dict[str, str] = msgspec.field(default_factory=dict)  # broker -> why it could not be checked
    applied_seq: int = 0


# ------------------------------------------------------------------------- control and queries


class SetTradingState(Message, frozen=True, kw_only=True, tag="set_trading_state"):
    state: TradingState
    account: Name | None = None  # None and strategy None: global
    strategy_id: Name | None = None
    reason: str = ""


class CloseAll(Message, frozen=True, kw_only=True, tag="close_all"):
    account: Name
    strategy_id: Name | None = None


class CancelAll(Message, frozen=True, kw_only=True, tag="cancel_all"):
    account: Name | None = None
    strategy_id: Name | None = None


class RegistryReload(Message, frozen=True, kw_only=True, tag="registry_reload"):
    pass


class CancelRequest(Message, frozen=True, kw_only=True, tag="cancel_request"):
    """Cancel one order, named by the intent it came from (or its client order id)."""

    account: Name
    strategy_id: Name
    intent_id: Name | None = None
    client_order_id: Name | None = None


class TradingStateQuery(Message, frozen=True, kw_only=True, tag="trading_state_query"):
    pass


class ControlReply(Message, frozen=True, kw_only=True, tag="control_reply"):
    ok: bool
    detail: str = ""
    count: int | None = None  # how many orders a request acted on (cancel-all), when it says


Control = SetTradingState | CloseAll | CancelAll | RegistryReload | CancelRequest | TradingStateQuery


class PositionsQuery(Message, frozen=True, kw_only=True, tag="positions_query"):
    account: Name | None = None
    strategy_id: Name | None = None
    by_strategy: bool = False


class PositionsReply(Message, frozen=True, kw_only=True, tag="positions_reply"):
    positions: list[Position]
    applied_seq: int  # last exec-stream sequence the answering keeper has applied
    fills_applied: int = 0


class AccountQuery(Message, frozen=True, kw_only=True, tag="account_query"):
    account: Name


class UnresolvedQuery(Message, frozen=True, kw_only=True, tag="unresolved_query"):
    """To a gateway: the orders its adapter could not resolve without guessing."""


class UnresolvedReply(Message, frozen=True, kw_only=True, tag="unresolved_reply"):
    broker_id: Name
    unresolved: dict[str, list[str]]  # client order id (or "ticket:<n>") -> candidate broker tickets


Query = PositionsQuery | AccountQuery


class ErrorReply(Message, frozen=True, kw_only=True, tag="error_reply"):
    """Answer to a request that could not be served (bad request, unknown account)."""

    reason: str


AnyMessage = (
    Intent
    | OrderRequest
    | PlaceOrder
    | CancelOrder
    | ModifyOrder
    | OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderExpired
    | OrderModified
    | OrderTriggered
    | OrderCancelRejected
    | OrderModifyRejected
    | IntentRejected
    | OrderDenied
    | Quote
    | Heartbeat
    | AccountState
    | SetTradingState
    | CloseAll
    | CancelAll
    | RegistryReload
    | CancelRequest
    | TradingStateQuery
    | ControlReply
    | PositionsQuery
    | PositionsReply
    | AccountQuery
    | UnresolvedQuery
    | UnresolvedReply
    | ErrorReply
    | EquityPoint
    | BrokerPositionsQuery
    | BrokerPositionsReply
    | ReconcileQuery
    | ReconciliationReport
)
