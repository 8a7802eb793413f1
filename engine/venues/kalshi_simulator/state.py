"""The Kalshi simulator's state: one account on the shared matching core, venue ids (UUIDs),
what reads may see (read lag), and the WebSocket subscribers its events go to.

Pure of I/O except the subscribers' queues; the app module speaks HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from engine.domain.types import Liquidity, Side, VenueOrderStatus
from engine.venues.kalshi.ratelimit import KalshiBudget
from engine.venues.kalshi_simulator.config import KalshiSimConfig
from engine.venues.matching import (
    Accepted,
    Closed,
    Event,
    FeeAsset,
    Fill,
    Filled,
    InstrumentSpec,
    MatchingCore,
    Order,
    ReservePolicy,
)
from engine.venues.simulator.faults import FaultInjector, FaultKind

USD = "USD"
#: YES contracts the matching core holds per market on top of the account's own: a sell of YES
#: the account does not hold still finds contracts to sell, and opens (or adds to) a NO
#: position, the account's position being the core's holding minus this
SHORT_ROOM = Decimal(1_000_000)
_CENT = Decimal("0.01")
_TICK = Decimal("0.0001")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def dollars(value: Decimal) -> str:
    return f"{value.quantize(_TICK):f}"


def count(value: Decimal) -> str:
    return f"{value.quantize(_CENT):f}"


_STATUS = {
    VenueOrderStatus.NEW: "resting",
    VenueOrderStatus.PARTIALLY_FILLED: "resting",
    VenueOrderStatus.FILLED: "executed",
    VenueOrderStatus.CANCELED: "canceled",
    VenueOrderStatus.EXPIRED: "canceled",
    VenueOrderStatus.REJECTED: "canceled",
}


@dataclass(slots=True)
class Subscriber:
    """One WebSocket connection: the channels it subscribed, with their sids, and its queue."""

    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    sids: dict[str, int] = field(default_factory=dict)
    tickers: set[str] = field(default_factory=set)
    #: user messages a reorder fault holds back until the next one has gone out
    held: list[dict[str, Any]] = field(default_factory=list)
    #: the last ``seq`` sent per sid (the order book numbers its messages)
    seqs: dict[int, int] = field(default_factory=dict)
    #: the book subscription asked for NO levels at YES prices (``use_yes_price``)
    yes_price: bool = False


class KalshiSimState:
    def __init__(self, config: KalshiSimConfig, *, clock: Callable[[], int] = wall_ms) -> None:
        self.config = config
        self.clock = clock
        self._rng = random.Random(f"kalshi-sim:{config.seed}")
        self.markets = {m.ticker: m for m in config.markets}
        #: each market's lifecycle status (``active`` / ``closed`` / ``finalized``)
        self.status: dict[str, str] = dict.fromkeys(self.markets, "active")
        #: the weekly maintenance window: new orders refused, cancels allowed
        self.maintenance = False
        instruments = [
            InstrumentSpec(
                symbol=m.ticker,
                base_asset=m.ticker,
                quote_asset=USD,
                tick_size=_CENT,
                step_size=_CENT,
                min_qty=_CENT,
                max_qty=Decimal(1_000_000),
                min_price=_CENT,
                max_price=Decimal("0.99"),
                fee_asset=FeeAsset.QUOTE,
            )
            for m in config.markets
        ]
        balances = {USD: config.cash} | {
            m.ticker: config.contracts_of(m) + SHORT_ROOM for m in config.markets
        }
        self.core: MatchingCore[int] = MatchingCore(
            instruments,
            balances,
            config.fees,
            reserve=ReservePolicy.EVERY_ORDER,
            listener=self._on_event,
        )
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.order_uuid: dict[int, str] = {}
        self.order_by_uuid: dict[str, int] = {}
        self.fill_uuid: dict[tuple[str, int], str] = {}
        #: every create attempt's client order id, accepted or not
        self.submissions: list[str] = []
        #: authenticated REST requests per "METHOD /path" (without the /trade-api/v2 prefix)
        self.requests: Counter[str] = Counter()
        self.budget = None if config.tier is None else KalshiBudget(config.tier, headroom=1.0)
        self.subscribers: list[Subscriber] = []
        #: a fault: new WebSocket handshakes are refused as unauthenticated while REST still
        #: answers (a key revoked between a stream's reconnects; see ``drop_streams``)
        self.refuse_streams = False
        #: ``GET /portfolio/settlements`` rows, oldest first
        self.settlements: list[dict[str, Any]] = []
        #: the order book levels last published per market: (side, YES price) -> count
        self.levels: dict[str, dict[tuple[str, Decimal], Decimal]] = {
            m.ticker: {} for m in config.markets
        }
        self._next_sid = 1
        for m in config.markets:
            self.set_quote(m.ticker, bid=m.bid, ask=m.ask, size=m.size)

    # -- ids and visibility ---------------------------------------------------------------------

    def _new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    @property
    def lag_ms(self) -> int:
        return int(self.config.read_lag_s * 1000)

    def visible(self, at_ms: int) -> bool:
        """Whether a write at ``at_ms`` shows in reads yet."""
        return self.clock() >= at_ms + self.lag_ms

    def as_of_ms(self) -> int:
        return self.clock() - self.lag_ms

    def fill_id(self, fill: Fill[int]) -> str:
        key = (fill.symbol, fill.trade_id)
        known = self.fill_uuid.get(key)
        if known is None:
            known = self.fill_uuid[key] = self._new_uuid()
        return known

    def uuid_of(self, order: Order[int]) -> str:
        known = self.order_uuid.get(order.order_id)
        if known is None:
            known = self.order_uuid[order.order_id] = self._new_uuid()
            self.order_by_uuid[known] = order.order_id
        return known

    # -- market ---------------------------------------------------------------------------------

    def set_quote(self, ticker: str, *, bid: Decimal, ask: Decimal, size: Decimal) -> None:
        self.core.on_quote(ticker, bid=bid, bid_size=size, ask=ask, ask_size=size, clock=self.clock)
        self._publish("ticker", "ticker", self.ticker_msg(ticker), ticker=ticker)
        self._sync_book(ticker)

    # -- the order book (orderbook_delta) and public trades (trade) ------------------------------

    def book_levels(self, ticker: str) -> dict[tuple[str, Decimal], Decimal]:
        """The market's book: the touch with what is left of it (YES bids on ``yes``, YES asks
        on ``no`` at YES prices). Our resting orders are not in it: the core matches them
        against the touch, not against each other."""
        touch = self.core.touch.get(ticker)
        if touch is None:
            return {}
        levels = {("yes", touch.bid): touch.bid_left, ("no", touch.ask): touch.ask_left}
        return {k: v for k, v in levels.items() if v > 0}

    def _sync_book(self, ticker: str) -> None:
        """Publish a delta for every level that changed since the last publication."""
        new = self.book_levels(ticker)
        old = self.levels.get(ticker, {})
        self.levels[ticker] = new
        for key in sorted(set(old) | set(new)):
            change = new.get(key, Decimal(0)) - old.get(key, Decimal(0))
            if change == 0:
                continue
            side, price = key
            msg = {
                "market_ticker": ticker,
                "market_id": self._market_id(ticker),
                "price_dollars": price,
                "delta_fp": count(change),
                "side": side,
                "ts_ms": self.clock(),
            }
            self._publish("orderbook_delta", "orderbook_delta", msg, ticker=ticker)

    def book_snapshot(self, sub: Subscriber, sid: int, ticker: str) -> dict[str, Any]:
        """The ``orderbook_snapshot`` of the market for ``sub``, numbered in its sequence."""
        msg: dict[str, Any] = {"market_ticker": ticker, "market_id": self._market_id(ticker)}
        for side in ("yes", "no"):
            rows = [
                [dollars(self._book_price(sub, side, price)), count(size)]
                for (s, price), size in sorted(self.levels.get(ticker, {}).items())
                if s == side
            ]
            if rows:
                msg[f"{side}_dollars_fp"] = rows
        return {"type": "orderbook_snapshot", "sid": sid, "seq": self._seq(sub, sid), "msg": msg}

    def public_trade(self, ticker: str, *, price: Decimal, quantity: Decimal, taker: Side) -> None:
        """A trade of the market's other participants (the demo's market activity)."""
        self._publish(
            "trade", "trade", self._trade_msg(ticker, price, quantity, taker), ticker=ticker
        )

    def _trade_msg(
        self, ticker: str, price: Decimal, quantity: Decimal, taker: Side
    ) -> dict[str, Any]:
        now = self.clock()
        outcome = "yes" if taker is Side.BUY else "no"
        return {
            "trade_id": self._new_uuid(),
            "market_ticker": ticker,
            "yes_price_dollars": dollars(price),
            "no_price_dollars": dollars(1 - price),
            "count_fp": count(quantity),
            "taker_side": outcome,
            "taker_outcome_side": outcome,
            "taker_book_side": "bid" if taker is Side.BUY else "ask",
            "is_block_trade": False,
            "ts": now // 1000,
            "ts_ms": now,
        }

    def _market_id(self, ticker: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kalshi-sim:{ticker}"))

    @staticmethod
    def _book_price(sub: Subscriber, side: str, price: Decimal) -> Decimal:
        # the venue's default reports NO levels at NO prices; use_yes_price at YES prices
        return price if side == "yes" or sub.yes_price else 1 - price

    def _seq(self, sub: Subscriber, sid: int) -> int:
        seq = sub.seqs.get(sid, 0) + 1
        sub.seqs[sid] = seq
        return seq

    def ticker_msg(self, ticker: str) -> dict[str, Any]:
        """The ``ticker`` channel message for the market's current touch."""
        touch = self.core.touch[ticker]
        bid, ask, size = touch.bid, touch.ask, touch.bid_size
        return {
            "market_ticker": ticker,
            "price_dollars": dollars((bid + ask) / 2),
            "yes_bid_dollars": dollars(bid),
            "yes_ask_dollars": dollars(ask),
            "yes_bid_size_fp": count(size),
            "yes_ask_size_fp": count(size),
            "ts": self.clock() // 1000,
            "ts_ms": self.clock(),
        }

    def close_market(self, ticker: str) -> int:
        """The market closes: its resting orders are canceled (and say so on the stream), and
        every order operation on it is refused from now on. Returns how many were canceled."""
        self.status[ticker] = "closed"
        resting = self.core.open_orders(ticker)
        for order in resting:
            self.core.cancel(order.order_id, clock=self.clock)
        return len(resting)

    def settle_market(self, ticker: str, result: str) -> dict[str, Any]:
        """The market closes (if still open), is determined ``result`` (``yes`` / ``no``) and
        settles: the account's net position leaves it, YES contracts paying $1 each on ``yes``,
        NO contracts (a net short YES) $1 each on ``no``. Both steps go out on
        ``market_lifecycle_v2``. Returns the settlement row."""
        if self.status[ticker] == "active":
            self.close_market(ticker)
        value = 100 if result == "yes" else 0
        now = self.clock()
        held = self.position(ticker)
        self._publish_lifecycle(
            ticker,
            {
                "event_type": "determined",
                "result": result,
                "determination_ts": now // 1000,
                "settlement_value": dollars(Decimal(value) / 100),
            },
        )
        yes, no = max(held, Decimal(0)), max(-held, Decimal(0))
        revenue = (yes if result == "yes" else no) * 100  # cents
        # the core counts a NO contract as a YES sold (its price received, not 1 - price paid):
        # settling it there is the signed position times the YES value
        self.core.balances[ticker].free = SHORT_ROOM - self.core.balances[ticker].locked
        self.core.balances[USD].free += held * value / 100
        self.status[ticker] = "finalized"
        row = {
            "ticker": ticker,
            "event_ticker": self.markets[ticker].event_ticker,
            "exchange_index": 0,
            "market_result": result,
            "yes_count_fp": count(yes),
            "yes_total_cost_dollars": "0.0000",
            "no_count_fp": count(no),
            "no_total_cost_dollars": "0.0000",
            "revenue": int(revenue),
            "settled_time": iso(now),
            "fee_cost": "0.0000",
            "value": value,
        }
        self.settlements.append(row)
        self._publish_lifecycle(ticker, {"event_type": "settled", "settled_ts": now // 1000})
        return row

    def _publish_lifecycle(self, ticker: str, msg: dict[str, Any]) -> None:
        self._publish(
            "market_lifecycle_v2", "market_lifecycle_v2", {"market_ticker": ticker} | msg,
            ticker=ticker,
        )  # fmt: skip

    # -- wire shapes ----------------------------------------------------------------------------

    def order_json(self, o: Order[int]) -> dict[str, Any]:
        price = o.price or Decimal(0)
        taker = [f for f in o.fills if f.liquidity is Liquidity.TAKER]
        maker = [f for f in o.fills if f.liquidity is Liquidity.MAKER]
        bid = o.side is Side.BUY
        return {
            "order_id": self.uuid_of(o),
            "user_id": "sim-user",
            "client_order_id": o.client_order_id,
            "ticker": o.symbol,
            "outcome_side": "yes" if bid else "no",
            "book_side": "bid" if bid else "ask",
            "type": "limit",
            "status": _STATUS[o.status],
            "yes_price_dollars": dollars(price),
            "no_price_dollars": dollars(1 - price),
            "fill_count_fp": count(o.filled),
            "remaining_count_fp": count(o.remaining if o.is_open else Decimal(0)),
            "initial_count_fp": count(o.quantity),
            "taker_fees_dollars": dollars(sum((f.fee for f in taker), Decimal(0))),
            "maker_fees_dollars": dollars(sum((f.fee for f in maker), Decimal(0))),
            "taker_fill_cost_dollars": dollars(sum((f.quote_quantity for f in taker), Decimal(0))),
            "maker_fill_cost_dollars": dollars(sum((f.quote_quantity for f in maker), Decimal(0))),
            "created_time": iso(o.created),
            "last_update_time": iso(o.updated),
            "self_trade_prevention_type": "taker_at_cross",
            "exchange_index": 0,
        }

    def fill_json(self, f: Fill[int]) -> dict[str, Any]:
        bid = f.side is Side.BUY
        fid = self.fill_id(f)
        return {
            "fill_id": fid,
            "trade_id": fid,
            "exchange_index": 0,
            "order_id": self.order_uuid[f.order_id],
            "ticker": f.symbol,
            "market_ticker": f.symbol,
            "outcome_side": "yes" if bid else "no",
            "book_side": "bid" if bid else "ask",
            "count_fp": count(f.quantity),
            "yes_price_dollars": dollars(f.price),
            "no_price_dollars": dollars(1 - f.price),
            "is_taker": f.liquidity is Liquidity.TAKER,
            "fee_cost": dollars(f.fee),
            "created_time": iso(f.at),
            "ts": f.at // 1000,
        }

    # -- reads (what the read lag lets through), newest first ------------------------------------

    def listed_orders(
        self, *, ticker: str | None, status: str | None, min_ts: int | None
    ) -> list[dict[str, Any]]:
        out = []
        for o in sorted(self.core.orders.values(), key=lambda o: -o.seq):
            if ticker is not None and o.symbol != ticker:
                continue
            if not self.visible(o.created) or (min_ts is not None and o.created < min_ts * 1000):
                continue
            wire = self.order_json(o)
            if status is not None and wire["status"] != status:
                continue
            out.append(wire)
        return out

    def listed_fills(self, *, ticker: str | None, order_id: str | None) -> list[dict[str, Any]]:
        core_id = None if order_id is None else self.order_by_uuid.get(order_id, -1)
        out = []
        for f in reversed(self.core.fill_log):
            if ticker is not None and f.symbol != ticker:
                continue
            if core_id is not None and f.order_id != core_id:
                continue
            if self.visible(f.at):
                out.append(self.fill_json(f))
        return out

    def position(self, ticker: str) -> Decimal:
        """The account's net contracts: positive YES, negative NO."""
        bal = self.core.balances[ticker]
        return bal.free + bal.locked - SHORT_ROOM

    # -- NO positions: Kalshi's cash where the core's model differs -----------------------------

    def no_contracts(self) -> Decimal:
        return sum((max(-self.position(t), Decimal(0)) for t in self.markets), Decimal(0))

    def cash_available(self) -> Decimal:
        """``balance``: the core's free cash less $1 per NO contract held. The core received
        the YES price for each YES sold short; Kalshi charged the NO price (1 - YES price)
        instead: the two differ by the contract's $1 until it settles."""
        return self.core.balances[USD].free - self.no_contracts()

    def no_collateral_needed(self, ticker: str, quantity: Decimal, price: Decimal) -> Decimal:
        """What a sell of ``quantity`` YES at ``price`` must find in cash: the NO price of
        the part that opens NO (beyond the YES held and not already offered)."""
        offered = sum(
            (o.remaining for o in self.core.open_orders(ticker) if o.side is Side.SELL),
            Decimal(0),
        )
        uncovered = quantity - max(self.position(ticker) - offered, Decimal(0))
        return max(uncovered, Decimal(0)) * (1 - price)

    # -- events to subscribers ------------------------------------------------------------------

    def subscribe(self, sub: Subscriber, channels: list[str], tickers: list[str]) -> dict[str, int]:
        """New sids for channels not yet subscribed (a resubscribe after an unsubscribe gets a
        new one, as on the venue)."""
        for ch in channels:
            if ch not in sub.sids:
                sub.sids[ch] = self._next_sid
                self._next_sid += 1
        sub.tickers.update(tickers)
        if sub not in self.subscribers:
            self.subscribers.append(sub)
        return {ch: sub.sids[ch] for ch in channels}

    def unsubscribe_sids(self, sub: Subscriber, sids: list[int]) -> list[int]:
        """Drop the subscriptions ``sids`` of ``sub``; the sids it had."""
        dropped = [sid for ch, sid in list(sub.sids.items()) if sid in sids]
        sub.sids = {ch: sid for ch, sid in sub.sids.items() if sid not in sids}
        return dropped

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def drop_streams(self, channel: str) -> int:
        """Drop every connection subscribed to ``channel`` (it reconnects); how many."""
        dropped = [sub for sub in self.subscribers if channel in sub.sids]
        for sub in dropped:
            sub.queue.put_nowait(None)
        return len(dropped)

    def user_subscriptions(self) -> int:
        return sum(1 for s in self.subscribers if "fill" in s.sids or "user_orders" in s.sids)

    def _publish(self, channel: str, kind: str, msg: dict[str, Any], *, ticker: str) -> None:
        for sub in list(self.subscribers):
            sid = sub.sids.get(channel)
            if sid is None or (sub.tickers and ticker not in sub.tickers):
                continue
            if channel == "orderbook_delta":
                seq = self._seq(sub, sid)
                if self.faults.roll(FaultKind.ORDERBOOK_GAP):
                    continue  # lost on the way: the subscriber sees seq skip one
                price = self._book_price(sub, msg["side"], msg["price_dollars"])
                book_msg = msg | {"price_dollars": dollars(price)}
                sub.queue.put_nowait({"type": kind, "sid": sid, "seq": seq, "msg": book_msg})
                continue
            item = {"type": kind, "sid": sid, "msg": msg}
            if channel in ("ticker", "trade"):
                sub.queue.put_nowait(item)
                continue
            if self.faults.roll(FaultKind.WS_DISCONNECT_USER):
                self.unsubscribe(sub)
                sub.queue.put_nowait(None)  # the connection drops; this event never reaches it
                continue
            if self.faults.roll(FaultKind.REORDER_EXECUTION_REPORT):
                sub.held.append(item)  # goes out after the next user message
                continue
            sub.queue.put_nowait(item)
            if self.faults.roll(FaultKind.DUPLICATE_EXECUTION_REPORT):
                sub.queue.put_nowait(item)
            while sub.held:
                sub.queue.put_nowait(sub.held.pop(0))

    def _on_event(self, event: Event[int]) -> None:
        if isinstance(event, Accepted | Closed | Filled):
            order = event.order
            if isinstance(event, Filled):
                self._publish("fill", "fill", self._ws_fill(event.fill), ticker=order.symbol)
                self._public_fill(event.fill)
            wire = self.order_json(self.core.orders[order.order_id])
            wire |= {
                "status": _STATUS[order.status],
                "fill_count_fp": count(order.filled),
                "remaining_count_fp": count(order.remaining if order.is_open else Decimal(0)),
                "created_ts_ms": order.created,
                "last_updated_ts_ms": order.updated,
            }
            self._publish("user_orders", "user_order", wire, ticker=order.symbol)

    def _public_fill(self, f: Fill[int]) -> None:
        """Our fill is a trade on the market too (the taker: us, or whoever hit our order), and
        it took from the touch: the book moved."""
        taker = f.side if f.liquidity is Liquidity.TAKER else f.side.opposite
        msg = self._trade_msg(f.symbol, f.price, f.quantity, taker)
        self._publish("trade", "trade", msg, ticker=f.symbol)
        self._sync_book(f.symbol)

    def _ws_fill(self, f: Fill[int]) -> dict[str, Any]:
        rest = self.fill_json(f)
        bid = f.side is Side.BUY
        return {
            "trade_id": rest["fill_id"],
            "order_id": rest["order_id"],
            "market_ticker": f.symbol,
            "exchange_index": 0,
            "is_taker": rest["is_taker"],
            "side": "yes",
            "action": "buy" if bid else "sell",
            "book_side": rest["book_side"],
            "outcome_side": rest["outcome_side"],
            "purchased_side": rest["outcome_side"],
            "yes_price_dollars": rest["yes_price_dollars"],
            "count_fp": rest["count_fp"],
            "fee_cost": rest["fee_cost"],
            "ts": f.at // 1000,
            "ts_ms": f.at,
            "client_order_id": f.client_order_id,
            "post_position_fp": count(self.position(f.symbol)),
        }

    # -- ground truth -----------------------------------------------------------------------------

    def venue_orders_by_client_id(self) -> dict[str, list[str]]:
        """Every venue order per client order id (exactly-once: at most one each)."""
        out: dict[str, list[str]] = {}
        for o in sorted(self.core.orders.values(), key=lambda o: o.seq):
            out.setdefault(o.client_order_id, []).append(self.uuid_of(o))
        return out

    def fault_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.faults.counters.items() if v}

    def ground_truth(self) -> dict[str, Any]:
        return {
            "orders": [self.order_json(o) for o in self.core.orders.values()],
            "fills": [self.fill_json(f) for f in self.core.fill_log],
            "balances": {
                a: {"free": str(b.free), "locked": str(b.locked)}
                for a, b in self.core.balances.items()
                if a == USD
            },
            "cash_available": str(self.cash_available()),
            "positions": {t: str(self.position(t)) for t in self.markets},
            "venue_orders_by_client_id": self.venue_orders_by_client_id(),
            "settlements": list(self.settlements),
            "submissions": len(self.submissions),
            "faults": self.fault_counts(),
        }
