"""The broker adapter interface every gateway drives, and the capabilities an adapter declares.

A gateway owns one ``BrokerClient``. Adapters are idempotent on the client order id: placing an order whose
client order id the broker already knows returns that order instead of creating a second one, so a redelivered
command can never double an order.

What differs between brokers is declared as data (:class:`Capabilities`) and served through the optional methods
below, whose defaults do nothing; the gateway reads the declaration and never an adapter's class, so a new broker
is a new subpackage of ``ordermesh.brokers`` and an entry in :data:`ordermesh.brokers.registry.ADAPTER_TYPES`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import msgspec

from ordermesh.brokers.model import Balance, BrokerOrder, BrokerPosition, OrderBook
from ordermesh.brokers.reports import child_reports, reports_for
from ordermesh.contract.wire import ExecEvent, PlaceOrder, Quote

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from ordermesh.sizing.instruments import InstrumentOverride


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What an adapter does beyond the plain interface. Every field defaults to "no"."""

    #: The adapter stores each order with the command that placed it (and reports its later fills itself through
    #: :meth:`BrokerClient.take_changes`): the gateway keeps no copy of working orders' commands and resumes none.
    keeps_commands: bool = False
    #: The adapter places an order's stop-loss / take-profit as venue orders of their own once it has filled
    #: (``<coid>-sl`` / ``<coid>-tp``, reported with ``parent_client_order_id``): the gateway keeps their
    #: commands. (MT5 attaches them to the position; the paper venue keeps its own commands.)
    places_protective_orders: bool = False
    #: :meth:`BrokerClient.quotes` yields the broker's quotes, which the gateway publishes on ``om.md``. A venue
    #: that runs a market of its own (the paper venue) steps it as its quotes are read.
    streams_quotes: bool = False
    #: :meth:`BrokerClient.instruments` describes the traded symbols (tick size, lot step, ...) for KV
    #: ``om_instruments``, where the sizer and the router read them.
    reports_instruments: bool = False
    #: The KV bucket of the adapter's own durable state (tickets, orders); the gateway opens it and hands it over
    #: with :meth:`BrokerClient.use_state_store` before :meth:`BrokerClient.connect`.
    state_bucket: str | None = None


class BrokerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every broker entry of the configuration has; each broker type extends it with its own settings."""

    type: str
    enabled: bool = True


class VenueChange(NamedTuple):
    """An order that changed at a venue keeping its own commands, with the reports to publish for it."""

    cmd: PlaceOrder
    events: list[ExecEvent]
    working: bool


class BrokerClient(abc.ABC):
    """Async adapter to one broker connection."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    #: The adapter's own view of the connection, kept current by a heartbeat of its own; None when it keeps none
    #: (the gateway then uses the check it made at start).
    connected: bool | None = None

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
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
    ) -> BrokerOrder:
        """Change a working order (quantity, price) or its protection (stop-loss / take-profit; for a filled
        order, of the position it opened, where the broker keeps them there). ModificationError says what the
        broker cannot change."""

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

    def take_reports(self, cmd: PlaceOrder, order: BrokerOrder) -> list[ExecEvent]:
        """The reports of ``order`` (placed by ``cmd``) as it stands, taken for publishing now. A venue that
        tracks what it has reported marks them reported and may add what only it knows (triggers, slippage,
        position ids). Default: the reports read from the broker's view of the order."""
        return child_reports(reports_for(cmd, order), order.parent_client_order_id)

    def take_changes(self) -> Iterator[VenueChange]:
        """``keeps_commands`` venues: each order that changed and is not reported yet, all marked reported before
        the first is yielded (so a concurrent caller does not publish any of them too), leaving out an order whose
        placement its own handler has not reported yet (``take_reports``). Default: none."""
        return iter(())

    async def quotes(self) -> AsyncIterator[Quote]:
        """``streams_quotes``: the broker's quotes, for as long as the connection lives. Default: none."""
        return
        yield  # pragma: no cover - makes this an async generator

    async def instruments(self) -> dict[str, InstrumentOverride]:
        """``reports_instruments``: what the broker says about the traded symbols. Raises BrokerError when it
        cannot say (the instruments file then stands). Default: nothing."""
        return {}

    def use_state_store(self, kv: KeyValue) -> None:  # noqa: B027 - optional hook
        """``state_bucket``: the adapter's durable state is kept in ``kv`` from now on."""
