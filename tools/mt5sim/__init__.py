"""``ordermesh mt5-sim``: an MT5 terminal running the stock MQL5-JSON-API expert advisor, over its ZeroMQ sockets.

``server`` binds the EA's sockets and runs its timer loop; ``ea`` is the EA's request handling, function by
function; ``ctrade`` the parts of MQL5's CTrade it calls; ``cjaval`` its JSON library; ``errors`` its error texts;
``engine`` the account on its trade server (guesses, where the EA's source cannot say); ``bars`` and
``extensions`` the bars built from ticks and the opt-in SYMBOLINFO/BOOK answers.
"""
