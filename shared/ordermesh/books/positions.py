"""Compatibility names for the keeper's books; the code lives in :mod:`ordermesh.books.accounting`."""

from __future__ import annotations

from ordermesh.books.accounting import AccountBook, BookSnapshot, Ledger, NetPosition, Rules

#: The keeper's books (netting and hedging accounts, PnL, cash, margin): :class:`ordermesh.books.accounting.Ledger`.
PositionBook = Ledger

__all__ = ["AccountBook", "BookSnapshot", "Ledger", "NetPosition", "PositionBook", "Rules"]
