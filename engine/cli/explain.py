"""``tradectl explain``: the story of one decision, in plain words, from the ledger alone."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import typer

from engine.cli._app import app, console, fail, ledger_for, run_async, settings
from engine.cli.targets import check_target
from engine.database import open_database
from engine.ledger.explain import OrderStory, Story

#: order_events causes that are a submit attempt and the venue's answer to it
SUBMIT_CAUSES = ("ack", "submit_ambiguous", "submit_rejected")


def _num(value: Decimal | None) -> str:
    if value is None:
        return "-"
    text = format(value.normalize(), "f")
    return text


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%H:%M:%S.%f")[:-3]


def _span(seconds: Decimal | float | None) -> str:
    """A duration as a person reads it: ``245 ms``, ``1.5 s``, ``3.2 min``."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if abs(s) < 1:
        return f"{s * 1000:.0f} ms"
    if abs(s) < 120:
        return f"{s:.3g} s"
    if abs(s) < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def _say(text: str = "") -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _decision_lines(d: dict[str, Any]) -> None:
    _say(
        f"decision {d['decision_id']} · strategy {d['strategy_id']} · account {d['account']} "
        f"· {d['symbol']}"
    )
    what = d["intent"]
    if d["side"] is not None:
        what = f"{d['side']} {_num(d['quantity'])}"
        if d["limit_price"] is not None:
            what += f" @ {_num(d['limit_price'])} limit"
    if d["decision_price"] is not None:
        what += f" (price seen {_num(d['decision_price'])})"
    _say(f"  decided {d['decided_at']:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" UTC: {what}")
    _say(f"  reason: {d['reason']}")
    _say(
        f"  market data of {_time(d['md_ts'])}, {_span(d['md_age_s'])} old at the decision "
        f"(window {d['interval_key']}, #{d['sequence']}); outcome: {d['outcome']}"
    )
    verdicts = d["verdicts"] or []
    _say(f"verdicts ({len(verdicts)})" if verdicts else "verdicts: none stored")
    for v in verdicts:
        line = f"  {v['result']:<6} {v['check']:<16} limit {v['limit']}  observed {v['observed']}"
        if v.get("resized_qty") is not None:
            line += f"  -> resized to {v['resized_qty']}"
        if v.get("message"):
            line += f"  ({v['message']})"
        _say(line)


def _event_text(e: dict[str, Any]) -> str:
    arrow = f"{e['from_state']} -> {e['to_state']}" if e["from_state"] else f"-> {e['to_state']}"
    text = f"    {_time(e['recorded_at'])}  {arrow:<36} {e['cause']}"
    detail = e["detail"] or {}
    said = []
    if "venue_status" in detail:
        said.append(f"venue {detail['venue_status']}")
    if "venue_filled_qty" in detail:
        said.append(f"venue filled {detail['venue_filled_qty']}")
    if detail.get("reason"):
        said.append(str(detail["reason"]))
    return text + (f" ({', '.join(said)})" if said else "")


def _order_lines(story: OrderStory) -> None:
    o = story.order
    price = f" @ {_num(o['limit_price'])}" if o["limit_price"] is not None else ""
    _say(
        f"order {o['client_order_id']} · {o['type']} {o['time_in_force']} {o['side']} "
        f"{_num(o['requested_qty'])}{price} · now {o['state']}"
    )
    fees = sorted({f["fee_asset"] or "?" for f in story.fills})
    _say(
        f"  filled {_num(o['filled_qty'])} of {_num(o['requested_qty'])} in {o['fill_count']} "
        f"fill(s), avg {_num(o['avg_price'])}, fees {_num(o['fees'])} {'/'.join(fees)}".rstrip()
    )
    _say(
        f"  reserved {_time(o['created_at'])} ({_span(o['decide_to_reserve_s'])} after the "
        f"decision), lease epoch {o['lease_epoch']}, valid until {_time(o['expires_at'])}"
    )
    if o["submitted_at"] is not None:
        ack = (
            f", acked {_time(o['acked_at'])} ({_span(o['submit_to_ack_s'])})"
            if o["acked_at"]
            else ", no ack"
        )
        _say(
            f"  submitted {_time(o['submitted_at'])} ({_span(o['decide_to_submit_s'])} after "
            f"the decision){ack}, venue order {o['venue_order_id'] or '-'}"
        )
    else:
        _say("  never submitted")
    if o["last_error"]:
        _say(f"  last error: {o['last_error']}")
    attempts = [
        e
        for e in story.events
        if e["cause"] in SUBMIT_CAUSES or str(e["cause"]).startswith("resubmit")
    ]
    if attempts:
        answers = ", ".join(
            f"{e['cause']} -> {e['to_state']}" for e in attempts if not e["cause"].startswith("re")
        )
        _say(f"  submit attempts: {1 + sum(e['cause'].startswith('resubmit') for e in attempts)}"
             f" (venue answers: {answers or 'none'})")  # fmt: skip
    _say(f"  state changes ({len(story.events)}):")
    for e in story.events:
        _say(_event_text(e))
    if story.fills:
        basis = story.fills[0]["basis"]
        _say(f"  fills ({len(story.fills)}), slippage against the {basis or 'no reference'}:")
    for f in story.fills:
        slip = (
            f"slippage {_num(f['slippage'])} ({float(f['slippage_bps']):+.2f} bps, "
            f"cost {_num(f['slippage_cost'])})"
            if f["slippage"] is not None
            else "slippage: no reference price"
        )
        _say(
            f"    {_time(f['venue_ts'])}  trade {f['trade_id']}  {f['side']} {_num(f['qty'])} "
            f"@ {_num(f['price'])}  fee {_num(f['fee'])} {f['fee_asset'] or ''} "
            f"{(f['liquidity'] or '').lower()}  {slip}  "
            f"{_span(f['decide_to_fill_s'])} after the decision, "
            f"{_span(f['submit_to_fill_s'])} after submit, reported +{_span(f['report_delay_s'])}"
        )
    if len(story.fills) > 1:
        total = sum((f["slippage_cost"] for f in story.fills if f["slippage_cost"] is not None),
                    Decimal(0))  # fmt: skip
        _say(f"  slippage over all fills: cost {_num(total)}")
    n = story.next_order
    if n is not None:
        price = f" @ {_num(n['limit_price'])}" if n["limit_price"] is not None else ""
        _say(
            f"  next order of the strategy on {o['symbol']}: {n['client_order_id']} "
            f"{n['side']} {_num(n['requested_qty'])}{price}, reserved {_time(n['created_at'])}, "
            f"now {n['state']}: {n['reason']}"
        )


def render(story: Story) -> None:
    _decision_lines(story.decision)
    if not story.orders:
        _say("no order: the decision was " + story.decision["outcome"])
    for order in story.orders:
        _order_lines(order)
    if story.incidents:
        _say(f"incidents mentioning it ({len(story.incidents)}):")
    for i in story.incidents:
        state = (
            f"resolved {i['resolved_at']:%Y-%m-%d %H:%M}: {i['resolution_note']}"
            if i["resolved_at"]
            else "open"
        )
        _say(f"  #{i['id']} {i['severity']} {i['kind']} ({state}): {i['message']}")
    if not story.incidents:
        _say("incidents mentioning it: none")
    if story.alerts is not None:
        _say(f"alerts mentioning it: {len(story.alerts) or 'none'}")
        for a in story.alerts:
            # the blueprint's outbox columns, whichever of them the table has
            head = " ".join(str(a[k]) for k in ("created_at", "level", "kind") if a.get(k))
            if "message" in a:
                _say(f"  {head + ': ' if head else ''}{a['message']}")
            else:
                _say(f"  {json.dumps(a, default=str)}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


@app.command()
def explain(
    id_: Annotated[str, typer.Argument(metavar="ID", help="A client order id or a decision id.")],
    account: Annotated[
        str | None,
        typer.Option("--account", help="Whose order (default: the engine's TRADECTL_ACCOUNT)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The story as one JSON object.")] = False,
) -> None:
    """The story of one decision: strategy, reason, market data and its age, every verdict,
    the reservation, each submit and the venue's answer, state changes with causes, fills with
    fees, slippage and latency, the current state, and the incidents that mention it."""
    id_ = check_target("ID", id_) or ""
    account = check_target("--account", account)
    config = settings()
    if account is not None:
        config = config.model_copy(update={"account": account})

    async def go() -> Story | None:
        async with open_database(config) as db:
            return await ledger_for(db, config).explain.story(id_)

    story = run_async(go)
    if story is None:
        fail(f"no decision or order {id_!r} in account {config.account!r}", code=1)
    if as_json:
        print(json.dumps(dataclasses.asdict(story), default=_jsonable))
    else:
        render(story)
