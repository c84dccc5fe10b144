"""The sizer: intents in, sized orders (or refusals) out. Stateless; scale by replicas on one consumer.

Per intent it takes the account's state from a local mirror of KV ``om_accounts`` (published by the keeper and
pushed here by a watch the moment it changes, so it is as fresh as a read, without a round trip per intent) and
calls the pure ``ordermesh.sizing.engine``. What gateways report about instruments (KV
``om_instruments``) changes rarely: a local mirror of the bucket keeps the merged specs, so reading them costs
nothing per intent. Prices for currency conversion come from the quotes on ``om.md.>`` (latest mid per symbol).
"""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec
from nats.aio.msg import Msg

from ordermesh.contract.codec import INTENT_CODEC, QUOTE_CODEC, BadMessage, loose_fields, text, texts
from ordermesh.contract.subjects import INTENTS, KV_ACCOUNTS, KV_INSTRUMENTS, kv_key, kv_key_parts
from ordermesh.contract.wire import AccountState, Intent, IntentRejected, OrderRequest, RejectCategory
from ordermesh.platform import metrics
from ordermesh.platform.bus import KVMirror
from ordermesh.platform.config import OrderMeshConfig, unknown_account
from ordermesh.platform.log import bind_ids
from ordermesh.platform.runtime import Service
from ordermesh.sizing.engine import UNPROCESSABLE, AccountView, Sizer, outcome_labels, reject
from ordermesh.sizing.instruments import InstrumentSpec, PriceBook, decode_override, load_instruments
from ordermesh.sizing.kelly import preset


class SizerService(Service):
    name = "sizer"

    def __init__(self, config: OrderMeshConfig, **kw: object) -> None:
        super().__init__(config, **kw)  # type: ignore[arg-type]
        settings = config.sizer
        # Loaded at start so a bad file stops the process with one line (exit 2), not the first intent.
        self.sizer = Sizer(preset(settings.kelly_preset), load_instruments(settings.instruments_file))
        self.prices = PriceBook(max_age_s=settings.quote_max_age_s)
        #: (broker_id, symbol) -> the file's spec with the gateway's report over it (None: no usable spec).
        self.reported: dict[tuple[str, str], InstrumentSpec | None] = {}
        self._mirror: KVMirror | None = None
        self._accounts: KVMirror | None = None

    def default_http_port(self) -> int:
        return self.config.http.sizer

    async def setup(self) -> None:
        self._mirror = await self.bus.kv_mirror(KV_INSTRUMENTS, self.on_instrument_report)
        self._accounts = await self.bus.kv_mirror(KV_ACCOUNTS)
        await self.bus.subscribe(f"{self.subjects.prefix}.md.>", self.on_quote)
        self.consume(
            stream=INTENTS,
            durable="sizer",
            filter_subject=self.subjects.all_intents,
            codec=INTENT_CODEC,
            handler=self.on_intent,
            lane=lambda intent: intent.intent_id,  # stateless: intents are sized concurrently
            on_bad=self.on_bad_intent,
        )

    async def teardown(self) -> None:
        for mirror in (self._mirror, self._accounts):
            if mirror is not None:
                await mirror.stop()

    def on_instrument_report(self, key: str, value: bytes | None) -> None:
        parts = kv_key_parts(key)
        if len(parts) != 2:
            return
        broker_id, symbol = parts
        if value is None:
            self.reported.pop((broker_id, symbol), None)  # report withdrawn: the file's spec again
            return
        try:
            spec: InstrumentSpec | None = decode_override(value).apply(self.sizer.instruments.get(symbol))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            # Merged once here, not per intent; a report that makes no valid spec is not guessed around.
            self.log.warning("bad instrument report", broker_id=broker_id, symbol=symbol, error=str(exc))
            spec = self.sizer.instruments.get(symbol)
        self.reported[(broker_id, symbol)] = spec
        # Reports are rare (a gateway starting): each is worth a line saying what the sizer will now use.
        self.log.info(
            "instrument report applied",
            broker_id=broker_id,
            symbol=symbol,
            lots=None if spec is None else f"{spec.min_lot}..{spec.max_lot} step {spec.lot_step}",
        )

    async def on_quote(self, msg: Msg) -> None:
        try:
            quote = QUOTE_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)  # counted; the next quote replaces it
            return
        self.prices.update(quote.symbol, quote.bid, quote.ask)

    async def account(self, account: str) -> AccountView:
        """The keeper's last state of ``account`` (the configured fallback balance before there is one)."""
        raw = self._accounts.values.get(kv_key(account)) if self._accounts is not None else None
        if raw is None:
            settings = self.config.accounts.get(account)
            return AccountView(
                balance=self.config.sizer.fallback_balance,
                currency=settings.currency if settings else "USD",
                source="sizer.fallback_balance: no account state yet",
            )
        state = msgspec.msgpack.decode(raw, type=AccountState)
        return AccountView(balance=state.balance, free_margin=state.free_margin, currency=state.currency)

    async def account_balance(self, account: str) -> Decimal:
        return (await self.account(account)).balance

    def instrument(self, intent: Intent) -> InstrumentSpec | None:
        """The file's spec, with what the intent's gateway reported over it (it knows its broker's contract)."""
        broker_id = intent.broker_id or self.config.router.default_broker
        key = (broker_id, intent.symbol)
        if key in self.reported:
            return self.reported[key]
        return self.sizer.instruments.get(intent.symbol)

    async def on_bad_intent(self, msg: Msg, exc: BadMessage) -> None:
        """An intent that does not decode (a quantity of 1e999999, NaN, a wrong type) is refused to its strategy
        when it names itself: an intent with its id and strategy readable, and the strategy the one of the subject it
        came on (a strategy can only speak for itself)."""
        fields = loose_fields(msg.data)
        found = texts(fields, "intent_id", "strategy_id")
        if found is None or fields.get("type") != "intent":
            return
        intent_id, strategy_id = found
        if self.subjects.intent(strategy_id) != msg.subject:
            return
        ts = fields.get("ts_ns")
        refusal = IntentRejected(
            intent_id=intent_id,
            strategy_id=strategy_id,
            account=text(fields, "account"),
            symbol=text(fields, "symbol"),
            category=RejectCategory.INVALID,
            reason=f"INVALID: {exc.reason}: {exc.detail}"[:500],
            intent_ts_ns=ts if isinstance(ts, int) and 0 <= ts < 2**63 else 0,
        )
        await self.bus.publish(self.subjects.reject(strategy_id), refusal, msg_id=f"rej:{intent_id}")
        metrics.INTENTS.labels("rejected").inc()
        metrics.REFUSALS.labels(self.name, refusal.category.value).inc()
        self.log.info("undecodable intent refused", intent_id=intent_id, reason=exc.reason)

    async def on_intent(self, intent: Intent, msg: Msg) -> None:
        with bind_ids(intent_id=intent.intent_id, strategy_id=intent.strategy_id):
            account = await self.account(intent.account)
            started = time.perf_counter()
            if intent.account not in self.config.accounts:  # a typo must not open an account with the fallback
                why = unknown_account(intent.account, self.config)
                outcome: OrderRequest | IntentRejected = reject(intent, RejectCategory.INVALID, why)
            else:
                outcome = self.sizer.size(intent, account, prices=self.prices, instrument=self.instrument(intent))
            elapsed = time.perf_counter() - started
            method, status = outcome_labels(intent, outcome)
            metrics.SIZING_SECONDS.labels(method).observe(elapsed)
            metrics.SIZINGS.labels(method, status).inc()
            if isinstance(outcome, OrderRequest):
                await self.bus.publish(self.subjects.order(intent.account), outcome, msg_id=intent.intent_id)
                metrics.INTENTS.labels("sized").inc()
                metrics.HOP_SECONDS.labels("intent_to_order").observe(max(0, time.time_ns() - intent.ts_ns) / 1e9)
                self.log.debug("intent sized", quantity=str(outcome.quantity), method=method, status=status)
            else:
                await self.bus.publish(
                    self.subjects.reject(intent.strategy_id), outcome, msg_id=f"rej:{intent.intent_id}"
                )
                metrics.INTENTS.labels("rejected").inc()
                metrics.REFUSALS.labels(self.name, outcome.category.value).inc()
                if isinstance(outcome, IntentRejected) and outcome.reason.startswith(f"INVALID: {UNPROCESSABLE}:"):
                    self.bad_message(msg.subject, UNPROCESSABLE, outcome.reason)  # counted with the bad input
                self.log.info("intent rejected", reason=outcome.reason, method=method, status=status)
