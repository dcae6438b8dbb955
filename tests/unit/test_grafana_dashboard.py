"""The Grafana dashboard and the metrics cannot drift apart: every family RideFlow exports is on a
panel, every series a panel's expression names is one RideFlow exports, and every label it
groups or filters by is one that family has. The Prometheus configuration scrapes /metrics with
credentials."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from rideflow.metrics.families import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "rideflow.json"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
NAME = re.compile(r"\brideflow_[a-z0-9_]+")
SELECTOR = re.compile(r"(rideflow_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported() -> dict[str, tuple[str, frozenset[str]]]:
    """Each series name RideFlow exports -> (its family, the family's labels)."""
    out = {}
    for family in FAMILIES:
        labels = frozenset(family._labelnames)
        for metric in family.describe():
            for suffix in SUFFIXES[metric.type]:
                out[metric.name + suffix] = (metric.name, labels)
    return out


def panels() -> list[dict[str, Any]]:
    doc = json.loads(DASHBOARD.read_text())
    found = []
    for panel in doc["panels"]:
        found += [panel, *panel.get("panels", [])]  # a collapsed row holds its panels
    return [p for p in found if p["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_every_family_is_registered_and_listed() -> None:
    """A family made in `families` but left out of FAMILIES would escape the checks below."""
    registered = {f.name for f in REGISTRY.collect()}
    listed = {m.name for f in FAMILIES for m in f.describe()}
    assert {n for n in registered if n.startswith("rideflow_")} == listed


def test_every_exported_family_is_on_a_panel_and_every_panel_names_exported_series() -> None:
    series = exported()
    used: set[str] = set()
    for title, expr in expressions():
        names = NAME.findall(expr)
        assert names, f"panel {title!r} names no RideFlow series: {expr}"
        for name in names:
            assert name in series, f"panel {title!r} names {name}, which is not exported"
            used.add(series[name][0])
    families = {family for family, _ in series.values()}
    assert families - used == set(), "families on no panel"


def test_every_label_a_panel_uses_is_one_its_family_has() -> None:
    series = exported()
    for title, expr in expressions():
        labels = frozenset().union(*(series[n][1] for n in NAME.findall(expr)))
        for name, matchers in SELECTOR.findall(expr):
            for label in MATCHER.findall(matchers):
                assert label in series[name][1], f"panel {title!r}: {name} has no label {label}"
        for grouping in GROUPING.findall(expr):
            for label in (g.strip() for g in grouping.split(",") if g.strip()):
                assert label in labels | {"le"}, f"panel {title!r} groups by unknown {label}"


def test_the_dashboard_takes_its_datasource_as_an_input() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
    assert doc["__inputs"][0]["pluginId"] == "prometheus"
    for panel in panels():
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    ids = [p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_prometheus_scrapes_the_api_with_credentials() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"]
    assert job["static_configs"][0]["targets"]
