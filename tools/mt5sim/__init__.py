"""``ordermesh mt5-sim``: a bridge simulator speaking the MQL5-JSON-API expert advisor's protocol."""
