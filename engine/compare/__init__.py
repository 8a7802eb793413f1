"""``tradectl compare --paper ACCOUNT --backtest``: a paper account's trades against a backtest of
the same period replayed from the recorded market data (chapter 19.10.4).

:mod:`~engine.compare.replay` replays the recording through the same strategies, strategy host
and paper matching core with the same seeded fill model; :mod:`~engine.compare.trades` reads the
paper account's trades from the ledger; :mod:`~engine.compare.diff` pairs them by client order id
(both derive it from the decision key) and reports the difference per trade against the
tolerance.
"""
