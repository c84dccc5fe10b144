"""Commands that run processes: ``up`` (everything), one service each, the demo strategies, the MT5 simulator."""

from __future__ import annotations

import argparse
from typing import Any

from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.log import setup_logging
from ordermesh.platform.runtime import run_service
from services.cli.common import Command
from tools.mt5sim.server import add_arguments as _mt5sim_add
from tools.mt5sim.server import run as _mt5sim_run


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start NATS (if needed), every service and the demo strategies, with a live view")
    up.add_argument("--no-demo", action="store_true", help="do not start the demo strategies")
    up.add_argument("--duration", type=float, help="stop everything after this many seconds")
    up.add_argument("--no-view", action="store_true", help="print a status line now and then instead of the screen")
    up.add_argument(
        "--join",
        action="store_true",
        help="start the processes even though another ordermesh system already runs on this NATS (scale it out)",
    )
    up.add_argument(
        "--prometheus",
        nargs="?",
        type=int,
        const=9090,
        metavar="PORT",
        help="also start Prometheus (when installed) on 127.0.0.1:PORT (default 9090), scraping every process, "
        "with the alert rules of deploy/prometheus",
    )
    up.add_argument(
        "--cluster",
        action="store_true",
        help="a 3-node NATS cluster on loopback (replicas 3) and two of each service: routers sharing the account "
        "partitions, an active and a standby gateway per broker, two sizers, two keepers",
    )
    up.add_argument(
        "--mt5-sim",
        action="store_true",
        help="also start the MT5 bridge simulator (for a config with an mt5 broker: deploy/mt5/ordermesh-mt5.yaml)",
    )

    for name, text in (
        ("sizer", "run the sizer"),
        ("router", "run the router"),
        ("keeper", "run the position-keeper"),
        ("demo", "run the demo strategies"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--instance", help="instance name (default: host-pid; the keeper's default is 'keeper')")
        sp.add_argument("--http-port", type=int, help="port for /metrics and /healthz (0: any free port)")
        if name == "keeper":
            sp.add_argument("--replay", action="store_true", help="ignore the snapshot; rebuild from the stream")
    gw = sub.add_parser("gateway", help="run the gateway of one broker connection")
    gw.add_argument("broker_id")
    gw.add_argument("--instance")
    gw.add_argument("--http-port", type=int)

    co = sub.add_parser("console", help="run the operator's web console (live view; actions need the operator token)")
    co.add_argument("--instance")
    co.add_argument("--http-port", type=int, help="port of the page (default: http.console; 0: any free port)")
    co.add_argument("--login-url", action="store_true", help="print the URL that logs a browser in as operator, exit")
    co.add_argument("--rotate-token", action="store_true", help="replace the operator token (old sessions end), exit")

    _mt5sim_add(sub.add_parser("mt5-sim", help="run the MT5 bridge simulator (the MQL5-JSON-API EA's sockets)"))


def _service_kw(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if getattr(args, "instance", None):
        kw["instance"] = args.instance
    if getattr(args, "http_port", None) is not None:
        kw["http_port"] = args.http_port
    return kw


def cmd_sizer(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.sizer.service import SizerService

    return run_service(lambda: SizerService(config, **_service_kw(args)), config.log, service="sizer")


def cmd_router(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.router.service import RouterService

    return run_service(
        lambda: RouterService(config, config_path=args.config, **_service_kw(args)), config.log, service="router"
    )


def cmd_keeper(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.keeper.service import KeeperService

    return run_service(
        lambda: KeeperService(config, replay=args.replay, **_service_kw(args)), config.log, service="keeper"
    )


def cmd_gateway(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.gateway.service import GatewayService

    return run_service(
        lambda: GatewayService(config, args.broker_id, **_service_kw(args)),
        config.log,
        service="gateway",
        broker_id=args.broker_id,
    )


def cmd_demo(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.demo.strategy import main as demo_main

    setup_logging(config.log, service="demo")
    return demo_main(config)


def cmd_up(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.up import up

    return up(config, args)


def cmd_console(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.console.cli import console

    return console(config, args)


def cmd_mt5_sim(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    return _mt5sim_run(args)


COMMANDS: dict[str, Command] = {
    "up": cmd_up,
    "sizer": cmd_sizer,
    "router": cmd_router,
    "keeper": cmd_keeper,
    "demo": cmd_demo,
    "gateway": cmd_gateway,
    "mt5-sim": cmd_mt5_sim,
    "console": cmd_console,
}
