"""What an operation's result says, in sentences (``tradectl reconcile``, ``cancel-all``).

The result is the JSON the lease holder stored in ``operator_requests.result``; a key this
module does not know is still shown, as ``key: value``, so nothing is hidden."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_RECONCILE_KEYS = {
    "ok", "error", "orders_looked_up", "fills_added", "unknown_orders", "incidents",
    "balances_checked", "balances_note", "balance_drifts", "balances_accepted",
    "external_trades",
}  # fmt: skip


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def render_result(kind: str, result: Mapping[str, Any]) -> str:
    if not result.get("ok", False):
        return f"{kind} failed: {result.get('error') or 'no result'}"
    if kind == "reconcile":
        return render_reconcile(result)
    if kind == "release":
        n = int(result.get("unresolved_orders", 0))
        return (
            f"release: {result.get('released_by')} handed the account off; "
            f"{_plural(n, 'order')} left unresolved for the next owner to look up"
        )
    if kind == "cancel_all":
        n = int(result.get("cancels_requested", 0))
        return f"cancel-all: {_plural(n, 'cancel')} requested"
    return "\n".join(f"{key}: {value}" for key, value in result.items())


def render_reconcile(result: Mapping[str, Any]) -> str:
    lines = ["reconcile: done"]
    looked_up = int(result.get("orders_looked_up", 0))
    fills = int(result.get("fills_added", 0))
    lines.append(
        f"  orders     {_plural(looked_up, 'order')} looked up on the venue, "
        f"{_plural(fills, 'missing fill')} added"
    )
    unknown = list(result.get("unknown_orders") or ())
    if unknown:
        lines.append(
            f"  unknown    {_plural(len(unknown), 'venue order')} the ledger does not know: "
            + ", ".join(map(str, unknown))
        )
    if result.get("balances_checked"):
        drifts = list(result.get("balance_drifts") or ())
        if drifts:
            lines.append(f"  balances   {_plural(len(drifts), 'asset')} drifted:")
            for d in drifts:
                detail = ", ".join(f"{k} {v}" for k, v in d.items() if k != "asset")
                lines.append(f"             {d.get('asset', '?')}: {detail}")
        else:
            lines.append("  balances   match the ledger")
    else:
        note = result.get("balances_note") or "fills in flight"
        lines.append(f"  balances   not compared this time ({note})")
    accepted = list(result.get("balances_accepted") or ())
    if accepted:
        lines.append("  accepted   the venue's balances of " + ", ".join(map(str, accepted)))
    external = list(result.get("external_trades") or ())
    if external:
        lines.append(
            "  external   trades not placed by tradectl on " + ", ".join(map(str, external))
        )
    incidents = list(result.get("incidents") or ())
    if incidents:
        ids = ", ".join(str(i) for i in incidents)
        lines.append(
            f"  incidents  {_plural(len(incidents), 'incident')} opened or updated: {ids} "
            "(`tradectl incidents` says what to check)"
        )
    else:
        lines.append("  incidents  none")
    for key, value in result.items():
        if key not in _RECONCILE_KEYS:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
