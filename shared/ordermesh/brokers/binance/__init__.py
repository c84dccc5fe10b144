"""Binance spot and USD-M futures through ccxt's async client (docs/architecture.md §17), one module per concern:

- ``spot`` / ``futures``: the adapters (``BinanceSpotAdapter``, ``BinanceFuturesAdapter``), account and market data
- ``settings``: the ``binance_spot`` / ``binance_usdm`` broker entries and the functions that build the adapters
- ``connection``: the ccxt client, every request (weight budget, 429 / 418), connection health, markets
- ``access``: the API key's standing (refused: nothing placed) and the clock offset applied to signed requests
- ``endpoints``: the REST endpoints with their documented request weights
- ``errors``: Binance's documented error codes (one table) and ccxt's errors as the broker error model
- ``requests``: the order requests exactly as Binance documents them (pure)
- ``records``: what we know of each order, and how Binance's answers fold into it
- ``orders``: place, status, cancel, modify (idempotent on the client order id)
- ``protection``: attached stop-loss / take-profit orders
- ``polling``: reconciliation, resumed orders, the poll of orders and trades
"""
