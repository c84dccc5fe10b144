"""What a broker says, in the adapters' common terms: its orders, fills, books, positions and balance, and the
errors a broker call can end in (the interface itself is :mod:`ordermesh.brokers.client`)."""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec

from ordermesh.contract.wire import Liquidity, RejectCategory, Side


class BrokerError(Exception):
    """Base of every broker failure. ``code`` is the broker's own code where it has one."""

    category = RejectCategory.BROKER

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class BrokerConnectionError(BrokerError):
    """The broker could not be reached or did not answer: the outcome of the request is unknown."""


class AuthenticationError(BrokerError):
    pass


class OrderError(BrokerError):
    """The broker refused the order (bad price, volume, market closed, ...)."""


class InsufficientFundsError(OrderError):
    category = RejectCategory.INSUFFICIENT_FUNDS


class OrderNotFoundError(BrokerError):
    pass


class SymbolNotFoundError(OrderError):
    category = RejectCategory.INSTRUMENT


class ModificationError(OrderError):
    pass


class BrokerOrderState(enum.Enum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class BrokerFill(msgspec.Struct, frozen=True, kw_only=True):
    fill_id: str
    quantity: Decimal
    price: Decimal
    commission: Decimal = Decimal(0)
    commission_asset: str | None = None
    liquidity: Liquidity = Liquidity.TAKER
    ts_ns: int = 0
    position_id: str | None = None  # the broker position the deal opened or reduced (hedging accounts)


class BrokerOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The broker's view of one order, with every fill it has had so far."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    state: BrokerOrderState
    filled_qty: Decimal = Decimal(0)
    limit_price: Decimal | None = None
    fills: list[BrokerFill] = msgspec.field(default_factory=list)
    #: An order the adapter placed to protect one of ours (attached stop-loss / take-profit): that order's id.
    parent_client_order_id: str | None = None
    #: Why the broker refused or dropped it (REJECTED / CANCELED), when the adapter knows.
    reason: str | None = None

    @property
    def leaves_qty(self) -> Decimal:
        return self.quantity - self.filled_qty


class BookLevel(msgspec.Struct, frozen=True):
    price: Decimal
    size: Decimal


class OrderBook(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    bids: list[BookLevel]
    asks: list[BookLevel]
    ts_ns: int


class BrokerPosition(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    quantity: Decimal  # signed
    avg_price: Decimal
    position_id: str | None = None


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    balance: Decimal
    equity: Decimal
    free_margin: Decimal
    margin_used: Decimal = Decimal(0)
