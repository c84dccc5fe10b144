"""Fuzz the running system: over 10,000 random and mutated messages on every subject a service consumes.

With permissions off, a seeded generator publishes random bytes, truncated and non-map msgpack, JSON, valid
messages of every consumed family with fields mutated (NaN, infinities, 1e300, 1e999999, negatives, huge and
unicode strings, wrong types, other type tags and schema versions, fields dropped or added) and ~1 MB payloads:
intents, order requests and commands through JetStream, execution reports into ``OM_EXEC``, control requests,
queries, quotes and heartbeats over core NATS. Then every service is still up, every message its codec refuses is
counted in ``ordermesh_bad_messages_total``, no handler raised, no durable consumer holds or redelivers anything,
the keeper's account is not poisoned and a valid intent still fills.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import urllib.request
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import nats
import yaml

from ordermesh.books.accounting import fits
from ordermesh.contract import codec as codecs
from ordermesh.contract.codec import BadMessage
from ordermesh.contract.subjects import KV_ACCOUNTS, kv_key
from ordermesh.contract.wire import (
    AccountQuery,
    AccountState,
    BrokerPositionsQuery,
    CancelAll,
    CancelOrder,
    CancelRequest,
    Fixed,
    Heartbeat,
    Intent,
    Kelly,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderType,
    PlaceOrder,
    PositionSizingResult,
    PositionsQuery,
    Quote,
    ReconcileQuery,
    RegistryReload,
    RejectCategory,
    RiskPct,
    SetTradingState,
    Side,
    TradingState,
    TradingStateQuery,
    UnresolvedQuery,
)
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from tests.harness import ROOT, System, eventually

D = Decimal
SEED = 20240917
DECODE_REASONS = ("undecodable", "schema_version", "wrong_type", "invalid")
#: messages per family (10,400 in all)
PLAN = {"intent": 1600, "order": 1400, "cmd": 1400, "exec": 2200, "ctl": 800, "q": 1200, "md": 1300, "health": 500}
BIG = 1_000_000  # bytes: under NATS's 1 MiB payload limit with headers
EXTREME = ["NaN", "sNaN", "Infinity", "-Infinity", "1e300", "1e999999", "-1e999999", "1e-999999", "-1", "-0.01",
           "0", "999999999999999", "1E+15", "1e14", "1e-30"]  # fmt: skip
UNICODE = ["€😀", "\u202e\u0000ñ", "日本語の銘柄", "🚀" * 40, "a.b.>*% \t", "EURUSD\u200b"]
WRONG: list[Any] = [None, 12345, -1, 3.5, True, [], {}, [1, "a"], {"k": "v"}, 2**64 - 1, -(2**63)]
TAGS = ["intent", "order_request", "place_order", "cancel_order", "order_filled", "order_accepted", "quote",
        "heartbeat", "set_trading_state", "cancel_all", "positions_query", "reconcile_query", "nope", ""]  # fmt: skip
SYMBOLS = ("EURUSD", "GBPUSD", "BTCUSD")
PRICE = {"EURUSD": D("1.085"), "GBPUSD": D("1.27"), "BTCUSD": D(65000)}


class Fuzz:
    """A seeded generator of hostile messages: ``(family, subject, bytes)``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def uid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}-{self.rng.getrandbits(32):08x}"

    # ----------------------------------------------------------------------------- valid bases

    def intent(self) -> Intent:
        r = self.rng
        symbol = r.choice(SYMBOLS)
        sizing: Any = Fixed(qty=D("0.01"))
        roll = r.random()
        if roll < 0.15:  # risk-based sizes stay small (0.02 and 0.06 lots): the venue's margin must last
            symbol, sizing = "EURUSD", RiskPct(risk_pct=D("0.0001"), stop_loss_pips=D(40))
        elif roll < 0.3:
            symbol = "GBPUSD"
            sizing = Kelly(win_rate=0.51, avg_win=D(205), avg_loss=D(200), stop_loss_pips=D(40),
                           current_atr=D("0.0012"), average_atr=D("0.0010"), regime_quality=0.02)  # fmt: skip
        return Intent(
            intent_id=self.uid("fz-i"), strategy_id="fuzz", account="paper-1", symbol=symbol,
            side=r.choice(list(Side)), sizing=sizing,
        )  # fmt: skip

    def base(self, family: str) -> tuple[str, msgspec.Struct]:
        """A valid message of ``family`` and the subject it is consumed on."""
        r = self.rng
        symbol = r.choice(SYMBOLS)
        side = r.choice(list(Side))
        common = dict(client_order_id=self.uid("fz-c"), intent_id=self.uid("fz-i"), strategy_id="fuzz",
                      account="paper-1", broker_id="paper", symbol=symbol)  # fmt: skip
        if family == "intent":
            return "om.intent.fuzz", self.intent()
        if family == "order":
            intent = self.intent()
            audit = PositionSizingResult(method="fixed", status="ok", account_balance=D(100000),
                                         risk_amount=D(0), lot_size=D("0.01"))  # fmt: skip
            return "om.order.paper-1", OrderRequest(intent=intent, quantity=D("0.01"), sizing_audit=audit)
        if family == "cmd":
            kind = r.random()
            if kind < 0.6:
                cmd: msgspec.Struct = PlaceOrder(command_id=self.uid("fz-p"), side=side, order_type=OrderType.MARKET,
                                                 quantity=D("0.01"), **common)  # type: ignore[arg-type]  # fmt: skip
            elif kind < 0.8:
                cmd = CancelOrder(command_id=self.uid("fz-x"), **common)  # type: ignore[arg-type]
            else:
                cmd = ModifyOrder(command_id=self.uid("fz-m"), quantity=D("0.02"), **common)  # type: ignore[arg-type]
            return "om.cmd.paper", cmd
        if family == "exec":
            # forged reports (permissions are off) book into an account of their own: a fill at 1e14 is within
            # every bound and would rightly leave paper-1 without margin for the last, valid intent
            common["account"] = "fuzz-acct"
            kind = r.random()
            px = PRICE[symbol]
            if kind < 0.6:
                ev: msgspec.Struct = OrderFilled(
                    event_id=self.uid("fz-e"), broker_order_id="b1", fill_id=self.uid("fz-f"), side=side,
                    last_qty=D("0.01"), last_px=px, cum_qty=D("0.01"), leaves_qty=D(0), order_qty=D("0.01"),
                    commission=D("0.035"), **common,  # type: ignore[arg-type]
                )  # fmt: skip
            elif kind < 0.75:
                ev = OrderAccepted(event_id=self.uid("fz-e"), broker_order_id="b1", **common)  # type: ignore[arg-type]
            elif kind < 0.9:
                ev = OrderCanceled(event_id=self.uid("fz-e"), **common)  # type: ignore[arg-type]
            else:
                ev = OrderRejected(event_id=self.uid("fz-e"), category=RejectCategory.BROKER, reason="no",
                                   **common)  # type: ignore[arg-type]  # fmt: skip
            strategy = r.choice(["fuzz", "s-other", "ünï"])
            return f"om.exec.{r.choice(['paper', 'paper', 'forged'])}.{strategy}", ev
        if family == "ctl":
            kind = r.random()  # only harmless requests: nothing halts or reduces trading
            if kind < 0.3:
                return "om.ctl.trading", TradingStateQuery()
            if kind < 0.55:
                return "om.ctl.trading", SetTradingState(state=TradingState.ACTIVE, account="fuzz-acct")
            if kind < 0.8:
                return "om.ctl.cancel", CancelRequest(account="paper-1", strategy_id="fuzz", intent_id=self.uid("x"))
            if kind < 0.97:
                return "om.ctl.cancel_all", CancelAll(account="nobody")
            return "om.ctl.registry.reload", RegistryReload()
        if family == "q":
            kind = r.random()
            if kind < 0.3:
                return "om.q.positions", PositionsQuery(
                    account=r.choice([None, "paper-1"]), by_strategy=r.random() < 0.5
                )
            if kind < 0.5:
                return "om.q.account", AccountQuery(account="paper-1")
            if kind < 0.65:
                return "om.q.reconcile", ReconcileQuery(broker_id=r.choice([None, "paper", "nobody"]))
            if kind < 0.9:
                return "om.q.broker_positions.paper", BrokerPositionsQuery(broker_id="paper")
            return "om.q.unresolved.paper", UnresolvedQuery()
        if family == "md":
            mid = PRICE[symbol]
            quote = Quote(broker_id="paper", symbol=symbol, bid=mid, ask=mid * D("1.0001"), bid_size=D(1))
            return f"om.md.{r.choice(['paper', 'fuzzbroker'])}.{symbol}", quote
        hb = Heartbeat(service="gateway", instance=self.uid("fz-g"), started_ns=1, broker_id=r.choice(["paper", "fz"]))
        return f"om.health.gateway.{hb.instance}", hb

    # ----------------------------------------------------------------------------------- mutations

    def value(self, old: Any) -> Any:
        r = self.rng
        if isinstance(old, str) and _is_decimal(old) and r.random() < 0.7:
            return r.choice(EXTREME)
        roll = r.random()
        if roll < 0.35:
            return copy.deepcopy(r.choice(WRONG))  # a fresh copy: a shared dict could end up inside itself
        if roll < 0.6:
            return r.choice(UNICODE)
        if roll < 0.8:
            return r.choice(["x", "é", "😀"]) * r.choice([129, 2000, 20000])
        return r.choice(EXTREME)

    def mutate(self, data: dict[str, Any]) -> dict[str, Any]:
        r = self.rng
        for _ in range(r.randint(1, 3)):
            holders = [data] + [v for v in data.values() if isinstance(v, dict)]
            holder = r.choice(holders)
            if not holder:
                continue
            key = r.choice(list(holder))
            roll = r.random()
            if roll < 0.7:
                holder[key] = self.value(holder[key])
            elif roll < 0.8:
                del holder[key]
            elif roll < 0.88:
                data["type"] = r.choice(TAGS)
            elif roll < 0.94:
                data["v"] = r.choice([0, 2, 99, "1", -1])
            else:
                holder[r.choice(["extra", "tags", "€"])] = copy.deepcopy(r.choice([*UNICODE, *WRONG, "z" * 5000]))
        return data

    def payload(self, family: str) -> tuple[str, bytes]:
        r = self.rng
        subject, msg = self.base(family)
        roll = r.random()
        if roll < 0.10:
            return subject, r.randbytes(r.randint(0, 3000))
        if roll < 0.13:
            full = codecs.encode(msg)
            return subject, full[: r.randint(0, len(full) - 1)]
        if roll < 0.17:
            return subject, msgspec.msgpack.encode(r.choice([[1, 2, 3], 42, "text", None, [msgspec.to_builtins(msg)]]))
        if roll < 0.20:
            return subject, msgspec.json.encode(msg)
        if roll < 0.25:
            return subject, codecs.encode(msg)  # valid: the system keeps doing its work meanwhile
        return subject, msgspec.msgpack.encode(self.mutate(msgspec.to_builtins(msg)))

    def big(self, family: str) -> tuple[str, bytes]:
        """A ~1 MB payload: random bytes, or a valid message with one field a huge string."""
        subject, msg = self.base(family)
        if self.rng.random() < 0.5:
            return subject, self.rng.randbytes(BIG)
        data = msgspec.to_builtins(msg)
        data[self.rng.choice(list(data))] = "é" * (BIG // 2 - 2000)  # 2 bytes a character in UTF-8
        return subject, msgspec.msgpack.encode(data)

    def messages(self) -> list[tuple[str, str, bytes]]:
        out = [(family, *self.payload(family)) for family, n in PLAN.items() for _ in range(n)]
        for i in range(24):
            family = list(PLAN)[i % len(PLAN)]
            out.append((family, *self.big(family)))
        self.rng.shuffle(out)
        return out


def _is_decimal(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


#: service -> (subject test, codec) of what it consumes and decodes
CONSUMERS: dict[str, list[tuple[Callable[[str], bool], codecs.Codec[Any]]]] = {
    "sizer": [
        (lambda s: s.startswith("om.intent."), codecs.INTENT_CODEC),
        (lambda s: s.startswith("om.md."), codecs.QUOTE_CODEC),
    ],
    "router": [
        (lambda s: s.startswith("om.order."), codecs.ORDER_CODEC),
        (lambda s: s.startswith("om.exec."), codecs.EXEC_CODEC),
        (lambda s: s.startswith("om.ctl."), codecs.CONTROL_CODEC),
        (lambda s: s.startswith("om.md."), codecs.QUOTE_CODEC),
        (lambda s: s.startswith("om.health.gateway."), codecs.HEARTBEAT_CODEC),
    ],
    "gateway": [
        (lambda s: s == "om.cmd.paper", codecs.COMMAND_CODEC),
        (lambda s: s == "om.q.broker_positions.paper", codecs.BROKER_POSITIONS_CODEC),
    ],
    "keeper": [
        (lambda s: s.startswith("om.exec."), codecs.EXEC_CODEC),
        (lambda s: s.startswith("om.md."), codecs.QUOTE_CODEC),
        (lambda s: s in ("om.q.positions", "om.q.account"), codecs.QUERY_CODEC),
        (lambda s: s == "om.q.reconcile", codecs.RECONCILE_CODEC),
    ],
}  # fmt: skip


def expected_refusals(messages: list[tuple[str, str, bytes]]) -> dict[str, int]:
    """How many messages each service's codecs refuse (what it must count as bad)."""
    out: Counter[str] = Counter()
    for _, subject, data in messages:
        for service, consumed in CONSUMERS.items():
            for matches, codec in consumed:
                if matches(subject):
                    try:
                        codec.decode(data)
                    except BadMessage:
                        out[service] += 1
    return dict(out)


def metric_sum(url: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(pair.split("=", 1) for pair in head[len(name) + 1 : -1].split(","))
        if all(found.get(k) == json.dumps(v) for k, v in labels.items()):
            total += float(value)
    return total


async def test_fuzzing_every_consumed_subject_leaves_the_system_up_counting_and_trading(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    messages = Fuzz(SEED).messages()
    assert len(messages) >= 10_000
    assert sum(1 for _, _, data in messages if len(data) >= BIG // 2) >= 20
    expected = expected_refusals(messages)
    by_family = Counter(family for family, _, _ in messages)
    assert set(by_family) == set(PLAN)

    # Mutated intents that stay valid are sized and traded for real (a Kelly request whose regime quality became
    # 12345 is capped at the risk limit: 5 lots); with the default 100,000 their margin would rightly leave nothing
    # for the last intent. Larger deposits leave room, so what is checked is the system, not the account's margin.
    config = yaml.safe_load((ROOT / "deploy" / "ordermesh.yaml").read_text())
    config["accounts"]["paper-1"]["deposit"] = config["brokers"]["paper"]["deposit"] = "100000000"
    (tmp_path / "ordermesh.yaml").write_text(yaml.safe_dump(config))
    env = {"ORDERMESH__KEEPER__RECONCILE_INTERVAL_S": "0"}
    async with System(nats_server.url, tmp_path, env=env, config=tmp_path / "ordermesh.yaml") as system:
        await system.start_all()
        nc = await nats.connect(nats_server.url, max_reconnect_attempts=0)
        js = nc.jetstream()
        last_exec_seq = 0
        try:
            pending: list[asyncio.Future[Any]] = []
            for i, (family, subject, data) in enumerate(messages):
                if family in ("intent", "order", "cmd", "exec"):
                    pending.append(asyncio.ensure_future(js.publish(subject, data, headers={"Nats-Msg-Id": f"fz-{i}"})))
                elif family == "ctl" or (family == "q" and i % 5):
                    await nc.publish(subject, data, reply=f"_INBOX.fuzz.{i}")
                else:
                    await nc.publish(subject, data)
                if len(pending) >= 64 or len(data) >= BIG // 2:
                    for ack in await asyncio.gather(*pending):
                        if ack.stream == "OM_EXEC":
                            last_exec_seq = max(last_exec_seq, ack.seq)
                    pending.clear()
                    await nc.flush()
            for ack in await asyncio.gather(*pending):
                if ack.stream == "OM_EXEC":
                    last_exec_seq = max(last_exec_seq, ack.seq)
            await nc.flush()
        finally:
            await nc.close()

        async with OrderMeshClient("after-fuzz", url=nats_server.url) as om:
            # every durable consumer has settled: nothing pending, in flight or being redelivered
            async def settled() -> bool:
                for stream, durable in (("OM_INTENTS", "sizer"), ("OM_ORDERS", "router"),
                                        ("OM_EXEC", "router-exec"), ("OM_COMMANDS", "gw-paper")):  # fmt: skip
                    info = await om.bus.js.consumer_info(stream, durable)
                    if info.num_pending or info.num_ack_pending or info.num_redelivered:
                        return False
                return True

            await eventually(settled, timeout=60, what="every consumer settled")

            async def keeper_caught_up() -> bool:
                return (await om.positions_reply()).applied_seq >= last_exec_seq

            await eventually(keeper_caught_up, timeout=30, what="keeper caught up with the exec stream")

            # every message a service's codecs refuse is counted by that service (decode reasons only): once, or
            # once more for each time the server delivered it again (a delivery that outlived its ack wait under load)
            def counted(service: str) -> tuple[int, int]:
                url = system.metrics_urls[service]
                bad = sum(metric_sum(url, "ordermesh_bad_messages_total", reason=r) for r in DECODE_REASONS)
                return int(bad), int(metric_sum(url, "ordermesh_redeliveries_total"))

            async def all_counted() -> bool:
                return all(n <= counted(s)[0] <= n + counted(s)[1] for s, n in expected.items())

            try:
                await eventually(all_counted, timeout=30, what="bad messages counted")
            except AssertionError:
                raise AssertionError({s: (counted(s), n) for s, n in expected.items()}) from None
            assert all(n > 500 for n in expected.values()), expected

            # still up, and no handler raised on any of it
            for name in ("keeper", "router", "gateway", "sizer"):
                assert system.alive(name), f"{name} died:\n{system.logs_tail()}"
                url = system.metrics_urls[name]
                assert metric_sum(url, "ordermesh_handler_errors_total") == 0, name
                assert metric_sum(url, "ordermesh_bad_messages_total", reason="handler_failed") == 0, name

            # no account is poisoned: the keeper's view and the state the sizer and router read
            for account in ("paper-1", "fuzz-acct"):
                state = await om.account_state(account)
                for figure in (state.balance, state.equity, state.margin_used, state.free_margin):
                    assert fits(figure), state
                entry = await (await om.bus.kv(KV_ACCOUNTS)).get(kv_key(account))
                assert fits(msgspec.msgpack.decode(entry.value, type=AccountState).equity)
            reply = await om.positions_reply()
            assert all(fits(p.quantity) and fits(p.avg_price) for p in reply.positions)

            # and trading goes on
            out = await om.wait(await om.buy("EURUSD", D("0.01")), timeout=15)
            assert isinstance(out, OrderFilled), out
