"""The in-process paper venue (:class:`PaperVenue`) and a ready, funded one
(:func:`default_paper_venue`)."""

from engine.venues.paper.defaults import (
    BTCUSDT,
    DEFAULT_BALANCES,
    DEFAULT_RULES,
    DEFAULT_WALKS,
    PRES_YES,
    default_paper_venue,
)
from engine.venues.paper.ground_truth import PaperOrders
from engine.venues.paper.streams import PaperStream
from engine.venues.paper.venue import PaperVenue

__all__ = [
    "BTCUSDT",
    "DEFAULT_BALANCES",
    "DEFAULT_RULES",
    "DEFAULT_WALKS",
    "PRES_YES",
    "PaperOrders",
    "PaperStream",
    "PaperVenue",
    "default_paper_venue",
]
