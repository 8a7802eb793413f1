"""Market data: feed tasks per venue connection, the conflated latest view, bars from quotes.

- :class:`~engine.marketdata.conflator.Conflator`: latest quote/bar/trade per symbol, staleness,
  sequence gaps; consumers are woken (never queued) and see every closed bar.
- :class:`~engine.marketdata.feed.MarketDataFeed`: ``venue.market_stream`` into a conflator,
  restarted with backoff when it raises, with a REST polling fallback.
- :class:`~engine.marketdata.bars.BarBuilder`: quotes (mid) into bars of an interval.
- :mod:`~engine.marketdata.random_walk`: the seeded quote source of ``make run``.
"""
