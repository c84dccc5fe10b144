"""Binance USD-M perpetual futures: :class:`BinanceFuturesAdapter`, the ``BrokerClient`` of ``type: binance_usdm``
brokers (docs/architecture.md §17): the spot adapter on futures' endpoints, with the account settings (position
mode, margin type, leverage), the margin wallet, positions and modify as an amend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from ordermesh.brokers.binance.connection import UsdmExchange
from ordermesh.brokers.binance.endpoints import AMEND, FUTURES_API, POSITION_RISK
from ordermesh.brokers.binance.errors import KeyRejectedError
from ordermesh.brokers.binance.records import dec
from ordermesh.brokers.binance.spot import BinanceSpotAdapter
from ordermesh.brokers.model import (
    Balance,
    BrokerConnectionError,
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    ModificationError,
    OrderError,
    OrderNotFoundError,
)
from ordermesh.contract.wire import OrderType


class BinanceFuturesAdapter(BinanceSpotAdapter):
    """Binance USD-M perpetual futures through ccxt's ``binanceusdm``: reduce-only orders (one-way mode) or
    ``positionSide`` LONG / SHORT (hedge mode), positions from ``positionRisk``, the wallet from ``account``,
    leverage / margin type / position mode from config (applied on connect), modify as an amend
    (``PUT /fapi/v1/order``). Fills come from ``userTrades`` (futures answers carry no fills), commissions in the
    margin asset."""

    MARKET_TYPE = "linear"
    DEFAULT_TYPE = "swap"
    API = "fapi"
    DEFAULT_WEIGHT_LIMIT = 2400
    FUTURES = True
    EP = FUTURES_API

    def __init__(
        self,
        broker_id: str,
        *,
        leverage: dict[str, int] | None = None,
        margin_type: str | None = None,
        hedge_mode: bool | None = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(broker_id, **kwargs)
        self.leverage = dict(leverage or {})
        self.margin_type = margin_type  # "cross" | "isolated" | None (leave as the account has it)
        self.hedge_mode = hedge_mode  # False = one-way (positionSide BOTH); True = LONG/SHORT; None = as it is
        self.dual_side: bool | None = hedge_mode  # the account's mode, as last set or read
        self.settings_applied = False

    def _new_exchange(self, config: dict[str, Any]) -> Any:
        ex = UsdmExchange(config)
        ex.local_prefix = self.base_url
        return ex

    def _hedge(self) -> bool:
        return bool(self.dual_side)

    async def connect(self) -> None:
        await super().connect()
        try:
            await self.apply_settings()
        except BrokerConnectionError as exc:
            self.log.warning(
                "futures settings not applied on connect; retried before the next order", error=exc.message
            )
        except KeyRejectedError:
            pass  # said once by the key's state; applied before the first order once the key is accepted

    async def _ready(self) -> None:
        await super()._ready()
        if not self.settings_applied:
            await self.apply_settings()

    async def _unchanged_ok(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any,
                            codes: tuple[str, ...]) -> None:  # fmt: skip
        try:
            await self._call(name, 1, fn, *args)
        except BrokerError as exc:
            if exc.code not in codes:  # -4046 / -4059: "No need to change ..." is not an error
                raise

    async def apply_settings(self) -> None:
        """Position mode, then margin type and leverage per configured symbol."""
        if self.hedge_mode is not None:
            await self._unchanged_ok("POST /fapi/v1/positionSide/dual", self.exchange.set_position_mode,
                                     self.hedge_mode, codes=("-4059",))  # fmt: skip
            self.dual_side = self.hedge_mode
        else:
            answer = await self._call("GET /fapi/v1/positionSide/dual", 30,
                                      self.exchange.fapiPrivateGetPositionSideDual, {})  # fmt: skip
            self.dual_side = bool(answer.get("dualSidePosition"))
        for symbol in sorted(self.leverage):  # margin type and leverage are per symbol: the configured ones
            market = await self._market(symbol)
            if self.margin_type:
                await self._unchanged_ok("POST /fapi/v1/marginType", self.exchange.set_margin_mode,
                                         self.margin_type, market["symbol"], codes=("-4046",))  # fmt: skip
            await self._call("POST /fapi/v1/leverage", 1, self.exchange.set_leverage, self.leverage[symbol],
                             market["symbol"])  # fmt: skip
        self.settings_applied = True

    def _leverage(self, market: dict[str, Any]) -> Decimal | None:
        for symbol, lev in self.leverage.items():
            if symbol in (market["symbol"], market["id"]):
                return Decimal(lev)
        return None  # the instruments file's

    def _ticker_params(self, ids: list[str]) -> dict[str, Any]:
        return {"symbol": ids[0]} if len(ids) == 1 else {}  # futures: one symbol, or all (weight 5)

    async def get_balance(self) -> Balance:
        info = await self._account()
        return Balance(
            currency=self.currency,
            balance=dec(info["totalWalletBalance"]),
            equity=dec(info["totalMarginBalance"]),
            free_margin=dec(info["availableBalance"]),
            margin_used=dec(info["totalInitialMargin"]),
        )

    async def get_positions(self) -> list[BrokerPosition]:
        rows = await self._api(POSITION_RISK)
        await self._markets()
        out = []
        for row in rows:
            amount = dec(row["positionAmt"])
            if amount == 0:
                continue
            side = row.get("positionSide", "BOTH")
            if side == "SHORT" and amount > 0:
                amount = -amount  # hedge mode: Binance reports the SHORT amount negative; never trust the sign alone
            out.append(
                BrokerPosition(
                    symbol=self._market_name(row["symbol"]),
                    quantity=amount,
                    avg_price=dec(row["entryPrice"]),
                    position_id=None if side == "BOTH" else side,
                )
            )
        return out

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
        """An amend of the working limit order (quantity and price; the order keeps its id)."""
        if stop_loss is not None or take_profit is not None:
            raise ModificationError("this venue does not change an order's stop-loss / take-profit")
        rec = self._record(client_order_id)
        if stop_price is not None or rec.order_type is not OrderType.LIMIT or rec.algo:
            raise ModificationError("only the quantity and price of limit orders can be amended")
        if rec.pending:
            await self._resolve(rec)
        if not rec.working:
            raise ModificationError(f"order {client_order_id} is not working ({rec.state})")
        qty = rec.quantity if quantity is None else quantity
        price = rec.limit_price if limit_price is None else limit_price
        assert price is not None
        try:  # what Binance cannot take (a quantity below the step) is refused before anything is sent
            request = {
                "symbol": self._market_id(rec.market),
                "origClientOrderId": rec.venue_coid,
                "side": rec.side.value,
                "quantity": self.amount_to_precision(rec.market, qty),
                "price": self.price_to_precision(rec.market, price),
            }
        except OrderError as exc:
            raise ModificationError(exc.message, code=exc.code) from exc
        try:
            info = await self._api(AMEND, request)
        except (OrderNotFoundError, OrderError) as exc:
            raise ModificationError(exc.message, code=exc.code) from exc
        rec.quantity, rec.limit_price = dec(info["origQty"]), dec(info["price"])
        self._apply(rec, info)
        await self._complete_fills(rec)
        return rec.view()
