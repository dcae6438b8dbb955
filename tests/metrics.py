"""Reading `/metrics` in tests: the text parsed by prometheus-client's own parser, sample values
looked up by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample by (sample name, labels), and the families' names."""

    samples: dict[tuple[str, Labels], float]
    families: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, Labels], float] = {}
        names = set()
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return cls(samples, frozenset(names))

    def total(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def labels_of(self, name: str) -> list[dict[str, str]]:
        """The label sets `name` has samples for."""
        return [dict(ls) for (n, ls) in self.samples if n == name]


async def scrape(client: httpx.AsyncClient, **headers: str) -> Scrape:
    """GET /metrics (as the client's caller unless `headers` say otherwise), parsed."""
    r = await client.get("/metrics", headers=headers or None)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return Scrape.parse(r.text)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How far `name` (summed over samples with `labels`) moved between two scrapes."""
    return after.total(name, **labels) - before.total(name, **labels)
