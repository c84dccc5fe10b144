"""``ordermesh tca``: slippage and commission by symbol and strategy over a period, from stream OM_EXEC."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
from typing import Any

import msgspec

from ordermesh.books.tca import analyse, format_report
from ordermesh.contract.codec import EXEC_CODEC, BadMessage
from ordermesh.contract.subjects import EXEC
from ordermesh.contract.wire import OrderFilled
from ordermesh.platform.auth import OPERATOR
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import OrderMeshConfig
from services.cli.common import Command, quiet

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def when(text: str) -> dt.datetime:
    """``30m``, ``2h``, ``7d`` (that long ago) or an ISO time (UTC unless it says otherwise)."""
    m = _DURATION.match(text.strip())
    if m:
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration (30m, 2h, 7d) or an ISO time, got {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def register(sub: argparse._SubParsersAction) -> None:
    tc = sub.add_parser("tca", help="slippage and commission by symbol and strategy over a period (from OM_EXEC)")
    tc.add_argument("--since", type=when, help="start: a duration ago (30m, 2h, 7d) or an ISO time (default: all)")
    tc.add_argument("--until", type=when, help="end (default: now)")
    tc.add_argument("--strategy", help="only this strategy")
    tc.add_argument("--symbol", help="only this symbol")
    tc.add_argument("--broker", help="only this broker id")
    tc.add_argument("--json", action="store_true", help="rows as JSON")


async def read_fills(bus: Bus, since: dt.datetime | None, until: dt.datetime | None) -> list[OrderFilled]:
    """Every fill in OM_EXEC stored since ``since`` and made before ``until``, read with an ordered consumer
    until the consumer has nothing pending."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    out: list[OrderFilled] = []
    done = asyncio.Event()
    end_ns = until.timestamp() * 1e9 if until else None

    async def on(msg: Any) -> None:
        try:
            event = EXEC_CODEC.decode(msg.data)
        except BadMessage:
            event = None
        if isinstance(event, OrderFilled) and (end_ns is None or event.ts_ns <= end_ns):
            out.append(event)
        if msg.metadata.num_pending == 0:
            done.set()

    if since is None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since.isoformat())
    subject = f"{bus.subjects.prefix}.exec.>"
    sub = await bus.js.subscribe(subject, stream=EXEC, cb=on, ordered_consumer=True, config=config)
    try:
        info = await sub.consumer_info()
        if info.num_pending or info.delivered.consumer_seq:
            await asyncio.wait_for(done.wait(), 60)
    finally:
        await sub.unsubscribe()
    return out


def cmd_tca(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    quiet(config)

    async def go() -> int:
        bus = Bus(config.nats, "cli:tca", identity=OPERATOR)
        await bus.connect()
        try:
            fills = await read_fills(bus, args.since, args.until)
        finally:
            await bus.close()
        fills = [
            f
            for f in fills
            if (args.strategy is None or f.strategy_id == args.strategy)
            and (args.symbol is None or f.symbol == args.symbol)
            and (args.broker is None or f.broker_id == args.broker)
        ]
        rows = analyse(fills)
        if args.json:
            print(msgspec.json.encode([msgspec.structs.asdict(r) for r in rows]).decode())
        else:
            print(format_report(rows))
        return 0

    return asyncio.run(go())


COMMANDS: dict[str, Command] = {"tca": cmd_tca}
