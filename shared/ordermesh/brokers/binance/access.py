"""What signed requests need besides the network (:class:`Access`, part of :class:`BinanceConnection`): an API key
Binance accepts, and Binance's time.

**The key.** A signed request Binance refuses with a key error (-2015, -2014, -1022, -1002: ``KeyRejectedError``)
marks the key refused: one error line, ``ordermesh_broker_authenticated`` 0 and ``connected`` False (the gateway's
health and heartbeat, so the router fails over), distinct from connection trouble (``ordermesh_broker_connected``
stays as the network is). While refused nothing is placed (each placement first asks with one signed read, and is
refused if that is refused too), the order polls wait, and each heartbeat asks with one signed read; the first
signed request answered again clears it (one info line) and reconciles what happened meanwhile.

**The clock.** Signed requests carry our timestamp, which Binance refuses (-1021) unless it is less than 1 s ahead
of its clock and at most ``recvWindow`` behind (Binance's "Timing security"). The offset to Binance's clock is
measured (``GET time``, the midpoint of the round trip) on connect and by every heartbeat and given to ccxt, which
signs with ``milliseconds() - options['timeDifference']``; it is the gauge ``ordermesh_broker_clock_offset_seconds``
and a warning when it passes ``clock_offset_warn_ms``. A request refused for its timestamp anyway (the clock jumped
between heartbeats) measures the offset again and is sent once more: nothing was done the first time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ordermesh.brokers.binance.errors import KeyRejectedError
from ordermesh.brokers.model import BrokerError
from ordermesh.platform import metrics

if TYPE_CHECKING:
    from ordermesh.brokers.binance.endpoints import Endpoint, Endpoints


class Access:
    """The API key's standing and the clock offset of one Binance connection."""

    broker_id: str
    log: Any
    exchange: Any
    EP: Endpoints
    reachable: bool
    _stale: bool
    _api: Callable[..., Awaitable[Any]]

    def _init_access(self, clock_offset_warn_ms: int) -> None:
        self.clock_offset_warn_ms = clock_offset_warn_ms
        self.clock_offset_ms: int | None = None  # Binance's clock minus ours
        self._clock_warned = False
        self.key_error: KeyRejectedError | None = None  # why Binance refuses the key; None while it accepts it
        self._key_known = False

    @property
    def connected(self) -> bool:
        """Binance answers and accepts the key: what the gateway's health and heartbeat report."""
        return self.reachable and self.key_error is None

    # ------------------------------------------------------------------------------------------------ the key

    def _key_refused(self, err: KeyRejectedError) -> None:
        if self.key_error is None:
            self.log.error("Binance refuses the API key: placing stopped until it is accepted again",
                           code=err.code, reason=err.message)  # fmt: skip
        self.key_error, self._key_known = err, True
        metrics.BROKER_AUTHENTICATED.labels(self.broker_id).set(0)

    def _key_accepted(self) -> None:
        if self.key_error is not None:
            self.log.info("Binance accepts the API key again; placing resumed")
            self._stale = True  # what happened while we could not look: reconciled by the next poll / heartbeat
        elif self._key_known:
            return
        self.key_error, self._key_known = None, True
        metrics.BROKER_AUTHENTICATED.labels(self.broker_id).set(1)

    async def _key_usable(self) -> None:
        """Before placing: while the key is refused, one signed read asks again; refused still, the placement is
        refused without being sent."""
        if self.key_error is None:
            return
        try:
            await self._api(self.EP.account)
        except KeyRejectedError as exc:
            raise KeyRejectedError(
                f"Binance refuses the API key ({exc.code} {exc.message}): placing stopped until it is accepted again",
                code=exc.code,
            ) from exc

    # ------------------------------------------------------------------------------------------------ the clock

    async def _measure_clock(self) -> int:
        """Binance's clock minus ours (ms), from ``GET time`` at the midpoint of the round trip; applied to ccxt's
        signing at once."""
        ep: Endpoint = self.EP.time
        sent = time.time()
        answer = await self._api(ep)
        received = time.time()
        offset = int(answer["serverTime"]) - round((sent + received) * 500)
        self.clock_offset_ms = offset
        self.exchange.options["timeDifference"] = -offset  # ccxt: timestamp = milliseconds() - timeDifference
        metrics.BROKER_CLOCK_OFFSET.labels(self.broker_id).set(offset / 1000)
        above = abs(offset) > self.clock_offset_warn_ms
        if above and not self._clock_warned:
            self.log.warning("clock differs from Binance's by more than the bound; signed requests use Binance's time",
                             offset_ms=offset, bound_ms=self.clock_offset_warn_ms)  # fmt: skip
        elif not above and self._clock_warned:
            self.log.info("clock back within the bound of Binance's", offset_ms=offset)
        self._clock_warned = above
        return offset

    async def _sync_clock(self) -> bool:
        """:meth:`_measure_clock`; False (logged) when Binance could not be asked."""
        try:
            await self._measure_clock()
        except BrokerError as exc:
            self.log.warning("Binance's clock not measured", error=exc.message)
            return False
        except (KeyError, TypeError, ValueError):
            self.log.warning("Binance's clock not measured: unreadable answer")
            return False
        return True
