"""Reading the engine's metrics the way Prometheus does: over HTTP, from the default registry."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families


@contextmanager
def metrics_server() -> Iterator[str]:
    """The default registry served on an ephemeral loopback port; yields its /metrics URL."""
    server, thread = start_http_server(0, addr="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Scrape:
    """One scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The one sample of ``name`` whose labels include ``labels``; ``None`` when absent."""
        found = [v for n, got, v in self.samples if n == name and labels.items() <= got.items()]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample of ``name`` whose labels include ``labels``."""
        return sum(v for n, got, v in self.samples if n == name and labels.items() <= got.items())

    def describe(self, account: str) -> str:
        """The account's samples, for a failure message (histogram buckets left out)."""
        return "\n".join(
            f"{name} {labels} {value}"
            for name, labels, value in self.samples
            if labels.get("account") == account and not name.endswith(("_bucket", "_created"))
        )

    def labels(self, name: str, label: str, **labels: str) -> set[str]:
        return {
            got[label]
            for n, got, _ in self.samples
            if n == name and labels.items() <= got.items() and label in got
        }


async def scrape(url: str) -> Scrape:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    return Scrape(await asyncio.to_thread(get))
