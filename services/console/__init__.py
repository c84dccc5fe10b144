"""The operator's web console (``ordermesh console``, started by ``ordermesh up``).

A read model of the bus served as one page that updates itself (Server-Sent Events): accounts, positions by
strategy, open orders, fills and refusals, the equity curve, a per-strategy profit summary, process and broker
health, hop latency. It reads as the ``observer`` identity; operator actions (halt, reduce, resume, cancel-all,
close-all) are sent as ``operator``, and only for a browser session that presented the operator token
(``services.console.access``). docs/architecture.md §19.
"""
