"""The venue circuit breakers of a running engine, as a line of ``tradectl status``.

The breakers live in the engine's memory (engine/venue_guard.py), not in the ledger: a second
process reads them where the engine publishes them, its ``/metrics`` (``tradectl_circuit_state``),
when ``TRADECTL_METRICS_PORT`` is set.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from engine.config import Settings

#: the status must not wait on an engine that does not answer
TIMEOUT_S = 1.0
_STATES = {0: "closed", 1: "half-open", 2: "open"}


def metrics_url(settings: Settings) -> str | None:
    if not settings.metrics_port:
        return None
    host = settings.metrics_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # listening everywhere: this host's loopback reaches it
    return f"http://{host}:{settings.metrics_port}/metrics"


def circuit_states(exposition: str, account: str) -> dict[str, str]:
    """``{endpoint: state}`` of ``account``'s breakers in a Prometheus text exposition."""
    states: dict[str, str] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "tradectl_circuit_state" and sample.labels["account"] == account:
                states[sample.labels["endpoint"]] = _STATES.get(int(sample.value), "?")
    return states


async def circuit_line(settings: Settings) -> str:
    url = metrics_url(settings)
    if url is None:
        return (
            "circuit breakers: in the running engine's status and /metrics "
            "(set TRADECTL_METRICS_PORT to show them here)"
        )
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            response = await client.get(url)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        return f"circuit breakers: no engine answered at {url} ({type(exc).__name__})"
    states = circuit_states(response.text, settings.account)
    if not states:
        return f"circuit breakers: the engine at {url} trades no account {settings.account}"
    return "circuit breakers: " + ", ".join(f"{e} {s}" for e, s in sorted(states.items()))
