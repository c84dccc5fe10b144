"""The broker adapter interface every gateway drives, and its error hierarchy.

A gateway owns one ``BrokerClient``. Adapters are idempotent on the client order id: placing an order whose
client order id the broker already knows returns that order instead of creating a second one, so a redelivered
command can never double an order.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal

import msgspec

from ordermesh.contract.wire import Liquidity, PlaceOrder, RejectCategory, Side


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


class BrokerClient(abc.ABC):
    """Async adapter to one broker connection."""

    #: True when the adapter itself stores each order with the command that placed it (and reports its later
    #: fills itself): the gateway then keeps no copy of working orders' commands.
    keeps_commands: bool = False
    #: True when the adapter places an order's stop-loss / take-profit as venue orders of their own once it has
    #: filled (``<coid>-sl`` / ``<coid>-tp``, reported with ``parent_client_order_id``); the gateway then keeps
    #: their commands. MT5 attaches them to the position instead; the paper venue keeps its own commands.
    places_protective_orders: bool = False

    def __init__(self, broker_id: str) -> None:
        self.broker_id = broker_id

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Open the connection (a no-op for adapters that connect lazily)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    @abc.abstractmethod
    async def validate_connection(self) -> bool:
        """A cheap round trip; True when the broker answered."""

    @abc.abstractmethod
    async def get_balance(self) -> Balance: ...

    @abc.abstractmethod
    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        """Place ``order``; idempotent on ``order.client_order_id``."""

    @abc.abstractmethod
    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder: ...

    @abc.abstractmethod
    async def modify_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrder: ...

    @abc.abstractmethod
    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        """The order as the broker knows it; raises OrderNotFoundError when it has never seen it."""

    @abc.abstractmethod
    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook: ...

    @abc.abstractmethod
    async def get_positions(self) -> list[BrokerPosition]: ...

    async def resume(self, orders: Iterable[PlaceOrder]) -> None:  # noqa: B027 - optional hook
        """Orders the gateway believes were placed: working when it last looked (after a restart), or a command
        delivered again. Adapters whose idempotency does not rest on their own store look each up before placing
        it again and report what became of it through :meth:`order_updates`. Default: nothing to do."""

    def unresolved(self) -> dict[str, list[str]]:
        """Orders or tickets the adapter could not match without guessing (client order id or ticket -> the
        candidate broker tickets), for the operator (``ordermesh orders --unknown``). Default: none."""
        return {}

    async def order_updates(self) -> AsyncIterator[BrokerOrder]:
        """Orders whose state the adapter learned of on its own (fills from a trade-event socket or a poll,
        cancels, expiries), each as the full current view. The gateway reports every one it is given; report
        ids are deterministic, so yielding the same order twice publishes nothing new. Default: none."""
        return
        yield  # pragma: no cover - makes this an async generator
