"""Operator control: the trading state (``halt``, ``reduce``, ``resume``), ``cancel-all`` open orders,
``close-all`` positions, and the ``kill`` switch."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ordermesh.platform.auth import OPERATOR
from ordermesh.platform.config import OrderMeshConfig
from services.cli.common import Command, quiet, request_ctl


def register(sub: argparse._SubParsersAction) -> None:
    for name, state in (("halt", "HALTED"), ("reduce", "REDUCING"), ("resume", "ACTIVE")):
        sp = sub.add_parser(name, help=f"set trading to {state} (global, or for one account or strategy)")
        sp.add_argument("--account", help="only this account")
        sp.add_argument("--strategy", help="only this strategy (needs --account)")
        sp.add_argument("--reason", default="", help="why (logged by the router)")
    ca = sub.add_parser("cancel-all", help="cancel every open order (of an account or a strategy)")
    ca.add_argument("--account")
    ca.add_argument("--strategy")

    kl = sub.add_parser(
        "kill", help="the kill switch: REDUCING, cancel every open order, flatten every position, then HALTED"
    )
    kl.add_argument("--account", action="append", help="this account (again for more); default: every configured one")
    kl.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the account to be flat")

    cl = sub.add_parser("close-all", help="cancel open orders and close every open position (reduce-only)")
    cl.add_argument("--account", default="paper-1")
    cl.add_argument("--strategy", help="only this strategy's positions")
    cl.add_argument("--timeout", type=float, default=20.0)


def cmd_trading(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.wire import SetTradingState, TradingState

    state = {"halt": TradingState.HALTED, "reduce": TradingState.REDUCING, "resume": TradingState.ACTIVE}
    if args.strategy and not args.account:
        print("ordermesh: --strategy needs --account", file=sys.stderr)
        return 2
    msg = SetTradingState(
        state=state[args.command], account=args.account, strategy_id=args.strategy, reason=args.reason
    )
    return request_ctl(config, "trading", msg)


def cmd_cancel_all(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.wire import CancelAll

    return request_ctl(config, "cancel_all", CancelAll(account=args.account, strategy_id=args.strategy))


def format_close_report(report: Any) -> str:
    lines = [f"close-all {report.account}" + (f" strategy {report.strategy_id}" if report.strategy_id else "")]
    lines.append(f"open orders: {report.cancel}")
    if not report.outcomes:
        lines.append("no open positions")
        return "\n".join(lines)
    header = f"{'symbol':<14} {'strategy':<16} {'quantity':>14} {'outcome':<8} {'remaining':>12}  reason"
    lines += [header, "-" * len(header)]
    for o in report.outcomes:
        lines.append(
            f"{o.symbol:<14} {(o.strategy_id or '*'):<16} {o.quantity!s:>14} {o.status:<8} {o.remaining!s:>12}  "
            f"{o.reason}"
        )
    closed = sum(1 for o in report.outcomes if o.status == "closed")
    lines.append(f"{closed} of {len(report.outcomes)} position(s) closed")
    return "\n".join(lines)


def cmd_close_all(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    import nats.errors

    from ordermesh.sdk import OrderMeshClient, OrderMeshError

    quiet(config)

    async def go() -> int:
        async with OrderMeshClient("close-all", config=config, account=args.account, identity=OPERATOR) as om:
            try:
                report = await om.close_all_positions(
                    args.account, args.strategy, whole_account=args.strategy is None, timeout=args.timeout
                )
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, OrderMeshError) as exc:
                print(f"close-all failed: {type(exc).__name__} {exc}", file=sys.stderr)
                return 1
        print(format_close_report(report))
        return 0 if report.flat else 1

    return asyncio.run(go())


def cmd_kill(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.sdk import OrderMeshClient

    quiet(config)
    accounts = args.account or sorted(config.accounts)

    async def go() -> int:
        ok = True
        async with OrderMeshClient("kill-switch", config=config, identity=OPERATOR) as om:
            for account in accounts:
                report = await om.kill(account, timeout=args.timeout)
                print(f"kill {account}")
                for step in report.steps:
                    print(f"  {step}")
                for c in report.closes:
                    line = f"  {c.symbol:<10} {c.strategy_id or '*':<16} {c.quantity!s:>12} {c.status:<7} {c.reason}"
                    print(line.rstrip())
                print(f"  {'flat' if report.flat else 'NOT FLAT'}, {'halted' if report.halted else 'NOT HALTED'}")
                ok = ok and report.flat and report.halted
        return 0 if ok else 1

    return asyncio.run(go())


COMMANDS: dict[str, Command] = {
    "kill": cmd_kill,
    "halt": cmd_trading,
    "reduce": cmd_trading,
    "resume": cmd_trading,
    "cancel-all": cmd_cancel_all,
    "close-all": cmd_close_all,
}
