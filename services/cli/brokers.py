"""The broker registry: ``brokers`` (list, validate, reload), and reconciliation with the brokers
(``positions --check``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ordermesh.platform.auth import OPERATOR
from ordermesh.platform.config import OrderMeshConfig
from services.cli.common import Command, request_ctl


def register(sub: argparse._SubParsersAction) -> None:
    br = sub.add_parser("brokers", help="list the broker registry (`brokers validate`: check it; `reload`: live)")
    br.add_argument("action", nargs="?", choices=["list", "validate", "reload"], default="list")


def cmd_brokers(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.brokers.registry import BrokerRegistry
    from ordermesh.contract.wire import RegistryReload

    if args.action == "reload":
        return request_ctl(config, "registry.reload", RegistryReload())
    registry = BrokerRegistry(config.brokers)
    if args.action == "validate":
        problems = registry.validate()
        for line in problems:
            print(line)
        usable = registry.usable()
        print(f"{len(registry.ids)} broker(s), {len(usable)} usable: {', '.join(usable) or 'none'}")
        return 1 if any(line.startswith("error:") for line in problems) else 0
    from services.cli.display import setting

    for i, bid in enumerate(registry.ids):
        row = registry.describe(bid)
        if i:
            print()
        print(f"{bid}  ({row['type']}, {row['status']})")
        for key, value in row.items():
            if key not in ("broker_id", "type", "enabled", "status", "gateway") and value is not None:
                print(f"  {key:<20} {setting(value)}")
    return 0


async def check_reconciliation(config: OrderMeshConfig) -> int:
    """Ask the position-keeper to compare its positions with each gateway's broker; print the differences."""
    import nats.errors

    from ordermesh.contract.codec import decode_any
    from ordermesh.contract.wire import ReconcileQuery, ReconciliationReport
    from ordermesh.platform.bus import Bus

    bus = Bus(config.nats, "cli:check", identity=OPERATOR)
    await bus.connect()
    try:
        reply = decode_any(await bus.request(bus.subjects.q("reconcile"), ReconcileQuery(), timeout=15.0))
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        print("no position-keeper answered the reconciliation request", file=sys.stderr)
        return 1
    finally:
        await bus.close()
    if not isinstance(reply, ReconciliationReport):
        print(f"reconciliation failed: {getattr(reply, 'reason', reply)}", file=sys.stderr)
        return 1
    print(format_reconciliation(reply))
    return 0 if not reply.diffs and not reply.errors else 1


def format_reconciliation(report: Any) -> str:
    lines = [f"reconciliation with the brokers ({', '.join(report.checked) or 'none answered'}):"]
    for broker, why in sorted(report.errors.items()):
        lines.append(f"  {broker}: not checked: {why}")
    if not report.diffs:
        lines.append("  no differences" if report.checked else "  nothing compared")
        return "\n".join(lines)
    header = f"  {'broker':<12} {'symbol':<14} {'keeper':>14} {'broker':>14} {'difference':>14}"
    lines += [header, "  " + "-" * (len(header) - 2)]
    for d in report.diffs:
        lines.append(
            f"  {d.broker_id:<12} {d.symbol:<14} {d.keeper_qty!s:>14} {d.broker_qty!s:>14} {d.difference!s:>14}"
        )
    lines.append(f"  {len(report.diffs)} difference(s)")
    return "\n".join(lines)


COMMANDS: dict[str, Command] = {"brokers": cmd_brokers}
