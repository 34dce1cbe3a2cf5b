"""The Grafana dashboard is valid JSON whose queries name metrics that really exist.

``avs_*`` names are read from the code that defines them (serve_app/speech/metrics.py, train_jobs/progress.py);
Ray Serve's names from the installed Ray package's source. Ray exports every metric with a ``ray_``
prefix, counters with a ``_total`` suffix and histograms as ``_bucket``/``_sum``/``_count`` series.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.ops.manifests import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "avs-dashboard.json"
AVS_SOURCES = [REPO_ROOT / "serve_app" / "speech" / "metrics.py", REPO_ROOT / "train_jobs" / "progress.py"]
RAY_SERVE_SOURCE = Path(ray.__file__).parent / "serve"
KINDS = ("Counter", "Gauge", "Histogram")
SERIES_SUFFIXES = {"_bucket": "Histogram", "_sum": "Histogram", "_count": "Histogram", "_total": "Counter"}


def defined_metrics(paths: list[Path]) -> dict[str, str]:
    """Metric name -> kind for every ``Counter/Gauge/Histogram("name", ...)`` call in ``paths``."""
    found: dict[str, str] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func not in KINDS:
                continue
            args = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "name")]
            if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                found[args[0].value] = func
    return found


def resolve(series: str, known: dict[str, str]) -> str | None:
    """The defined metric an exported series name belongs to, or None."""
    name = series.removeprefix("ray_")
    kind = known.get(name)
    if kind == "Gauge" or (kind == "Counter" and name.endswith("_total")):
        return name
    for suffix, wanted in SERIES_SUFFIXES.items():
        base = name.removesuffix(suffix)
        # A counter already named ``..._total`` keeps its name (no second suffix).
        if name.endswith(suffix) and known.get(base) == wanted and not base.endswith("_total"):
            return base
    return None


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    return exprs + [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


def _series(dashboard: dict[str, Any]) -> set[str]:
    return {name for query in _queries(dashboard) for name in re.findall(r"\bray_[a-z0-9_]+", query)}


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_avs_metrics_exist_in_the_code_and_all_are_shown(dashboard: dict[str, Any]) -> None:
    known = defined_metrics(AVS_SOURCES)
    assert {"avs_requests_total", "avs_request_latency_seconds", "avs_training_loss"} <= known.keys()
    used = {series for series in _series(dashboard) if series.startswith("ray_avs_")}
    unknown = sorted(series for series in used if resolve(series, known) is None)
    assert not unknown, f"the dashboard queries metrics the code does not define (or with the wrong suffix): {unknown}"
    shown = {resolve(series, known) for series in used}
    assert shown == set(known), f"metrics missing from the dashboard: {sorted(set(known) - shown)}"


def test_latency_percentiles_use_the_histogram_buckets(dashboard: dict[str, Any]) -> None:
    queries = " ".join(_queries(dashboard))
    for level in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({level}, sum by (le) (rate(ray_avs_request_latency_seconds_bucket" in queries


def test_ray_serve_metrics_exist_in_the_installed_ray(dashboard: dict[str, Any]) -> None:
    known = defined_metrics(sorted(RAY_SERVE_SOURCE.rglob("*.py")))
    assert "serve_deployment_replica_healthy" in known  # the scan itself works
    used = {series for series in _series(dashboard) if not series.startswith("ray_avs_")}
    assert {"ray_serve_deployment_replica_healthy", "ray_serve_deployment_queued_queries"} <= used
    unknown = sorted(series for series in used if resolve(series, known) is None)
    assert not unknown, f"not metrics of Ray {ray.__version__} (or with the wrong suffix): {unknown}"
