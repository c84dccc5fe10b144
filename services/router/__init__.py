"""The router: sized orders in, broker commands out; the order book of record (by client order id)."""
