from __future__ import annotations

import time
from decimal import Decimal

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from ordermesh import metrics
from ordermesh.log import bind_ids
from ordermesh.runtime import Service
from ordermesh.sizing import size_intent
from ordermesh.subjects import INTENTS, KV_ACCOUNTS, kv_key
from ordermesh.wire import INTENT_CODEC, AccountState, Intent, OrderRequest


class SizerService(Service):
    name = "sizer"

    def default_http_port(self) -> int:
        return self.config.http.sizer

    async def setup(self) -> None:
        self.consume(
            stream=INTENTS,
            durable="sizer",
            filter_subject=self.subjects.all_intents,
            codec=INTENT_CODEC,
            handler=self.on_intent,
        )

    async def account_balance(self, account: str) -> Decimal:
        """The balance the keeper last published for ``account`` (the configured fallback before that)."""
        try:
            entry = await (await self.bus.kv(KV_ACCOUNTS)).get(kv_key(account))
        except KeyNotFoundError:
            return self.config.sizer.fallback_balance
        if entry.value is None:
            return self.config.sizer.fallback_balance
        return msgspec.msgpack.decode(entry.value, type=AccountState).balance

    async def on_intent(self, intent: Intent, msg: Msg) -> None:
        with bind_ids(intent_id=intent.intent_id, strategy_id=intent.strategy_id):
            outcome = size_intent(intent, await self.account_balance(intent.account))
            if isinstance(outcome, OrderRequest):
                await self.bus.publish(self.subjects.order(intent.account), outcome, msg_id=intent.intent_id)
                metrics.INTENTS.labels("sized").inc()
                metrics.HOP_SECONDS.labels("intent_to_order").observe(max(0, time.time_ns() - intent.ts_ns) / 1e9)
                self.log.debug("intent sized", quantity=str(outcome.quantity))
            else:
                await self.bus.publish(
                    self.subjects.reject(intent.strategy_id), outcome, msg_id=f"rej:{intent.intent_id}"
                )
                metrics.INTENTS.labels("rejected").inc()
                self.log.info("intent rejected", reason=outcome.reason)
