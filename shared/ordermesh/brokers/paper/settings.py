"""The ``type: paper`` broker entry: the paper venue's settings and the function that builds it."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from ordermesh.brokers.client import BrokerClient, BrokerSettings
from ordermesh.brokers.paper.commissions import CommissionModel
from ordermesh.brokers.paper.feed import DepthProfile
from ordermesh.brokers.paper.matching import SlippageModel
from ordermesh.platform.config import FeedSymbol, _default_symbols


def _default_depth() -> dict[str, DepthProfile]:
    fx = DepthProfile(levels=5, step_ticks=2, sizes=[Decimal(1), Decimal(2), Decimal(5), Decimal(10), Decimal(20)])
    btc = DepthProfile(
        levels=5, step_ticks=100, sizes=[Decimal("0.5"), Decimal(1), Decimal(2), Decimal(5), Decimal(10)]
    )
    return {"EURUSD": fx, "GBPUSD": fx, "BTCUSD": btc}


def _default_commissions() -> dict[str, CommissionModel]:
    return {
        "BTC*": CommissionModel(maker_bps=Decimal(2), taker_bps=Decimal(5)),
        "*": CommissionModel(per_lot=Decimal("3.50")),
    }


class PaperSettings(BrokerSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The paper venue: books from a seeded synthetic feed (deterministic for a seed) or a replayed CSV file,
    matching, commissions, slippage and margin (docs/architecture.md §7)."""

    type: str = "paper"
    seed: int = 7
    quote_interval_ms: int = 200
    currency: str = "USD"
    deposit: Decimal = Decimal("100000")
    symbols: dict[str, FeedSymbol] = msgspec.field(default_factory=_default_symbols)
    #: Book shape per symbol or fnmatch pattern (a symbol without one: a single level of its ``size``).
    depth: dict[str, DepthProfile] = msgspec.field(default_factory=_default_depth)
    #: Replay books from this CSV file (seq,symbol,bids,asks) instead of the random walk; relative paths are
    #: tried from the working directory, then from the repository root.
    replay_file: str | None = None
    #: Contract sizes, currencies, leverage and margin rates (the sizer's specs); symbols without a spec are
    #: not margined and trade one unit per lot.
    instruments_file: str = "deploy/instruments.yaml"
    #: The account's leverage, replacing every instrument's; None keeps each instrument's own.
    leverage: Decimal | None = None
    #: Commission model per symbol or fnmatch pattern (the exact symbol first, then patterns in order).
    commissions: dict[str, CommissionModel] = msgspec.field(default_factory=_default_commissions)
    #: Extra slippage on taker fills per symbol or pattern (none by default: the book walk and the spread).
    slippage: dict[str, SlippageModel] = msgspec.field(default_factory=dict)


def build_paper(broker_id: str, settings: PaperSettings) -> BrokerClient:
    from ordermesh.brokers.paper.feed import Feed, ReplayFeed, SyntheticFeed, load_book_csv
    from ordermesh.brokers.paper.venue import PaperBroker
    from ordermesh.sizing.instruments import load_instruments, resolve_path

    feed: Feed
    if settings.replay_file:
        steps = load_book_csv(resolve_path(settings.replay_file), settings.symbols)
        feed = ReplayFeed(broker_id, settings.symbols, steps, settings.depth)
    else:
        feed = SyntheticFeed(broker_id, settings.symbols, settings.seed, settings.depth)
    return PaperBroker(
        broker_id,
        feed,
        currency=settings.currency,
        deposit=settings.deposit,
        instruments=load_instruments(settings.instruments_file),
        leverage=settings.leverage,
        commissions=settings.commissions,
        slippage=settings.slippage,
        quote_interval_s=settings.quote_interval_ms / 1000,
    )
