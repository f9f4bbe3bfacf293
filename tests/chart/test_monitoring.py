"""Alerts, dashboard and scraping: they read the metrics the code exports, and every alert has a
runbook section to link to."""

from __future__ import annotations

import json
import re
from typing import Any

import prometheus_client
import pytest

from agent_growth import metrics
from tests.chart.manifests import FULL_OPTIONS, NAMESPACE, RELEASE, RUNBOOK, Render, find, one


def _exported() -> dict[str, set[str]]:
    """Every metric defined in agent_growth/metrics.py, with the series names it exports."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    series = {}
    for value in vars(metrics).values():
        if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
            for family in value.describe():
                series[family.name] = {family.name + suffix for suffix in suffixes[family.type]}
    return series


FAMILIES = _exported()
EXPORTED = set().union(*FAMILIES.values())
# What the alerts take from Prometheus itself and from kube-state-metrics.
FROM_ELSEWHERE = {"up", "kube_pod_container_status_restarts_total"}
EXPECTED_ALERTS = {
    "AgentGrowthTaskFailureRateHigh",
    "AgentGrowthQueueBacklog",
    "AgentGrowthQueuedTaskTooOld",
    "AgentGrowthWebhookFailureRateHigh",
    "AgentGrowthWorkerRestarting",
    "AgentGrowthNoWorkers",
    "AgentGrowthApiErrorRateHigh",
    "AgentGrowthOperatorReconcileErrors",
}


def _metric_names(expr: str) -> set[str]:
    """Metric names an expression reads; parsing it also proves it is valid PromQL."""
    promql = pytest.importorskip(
        "promql_parser", reason="promql-parser is not installed (pip install -e '.[test]')"
    )
    # Grafana's own variables are not PromQL; give them values Prometheus would accept.
    expr = expr.replace("$__rate_interval", "5m")
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql.walk(promql.parse(expr), visit)
    return names


def _runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def _alerts(render: Render, values: dict[str, Any]) -> list[dict[str, Any]]:
    (rule,) = find(render(values), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alert_rules_cover_failures_queue_webhooks_and_workers(render: Render) -> None:
    alerts = _alerts(render, FULL_OPTIONS)

    assert {a["alert"] for a in alerts} == EXPECTED_ALERTS
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_alerts_read_only_metrics_that_exist(render: Render) -> None:
    for alert in _alerts(render, FULL_OPTIONS):
        names = _metric_names(alert["expr"])
        assert names and names <= EXPORTED | FROM_ELSEWHERE, (alert["alert"], names)


def test_alerts_select_this_release_only(render: Render) -> None:
    for alert in _alerts(render, FULL_OPTIONS):
        assert f'namespace="{NAMESPACE}"' in alert["expr"], alert["alert"]


def test_alert_thresholds_come_from_values(render: Render) -> None:
    values = {"monitoring": {"prometheusRule": {"enabled": True, "thresholds": {"queueDepth": 42}}}}
    backlog = next(a for a in _alerts(render, values) if a["alert"] == "AgentGrowthQueueBacklog")

    assert backlog["expr"].strip().endswith("> 42")


def test_operator_alert_needs_operator_metrics(render: Render) -> None:
    values = {
        "monitoring": {"prometheusRule": {"enabled": True}},
        "operator": {"metrics": {"enabled": False}},
    }

    names = {a["alert"] for a in _alerts(render, values)}
    assert "AgentGrowthOperatorReconcileErrors" not in names


def test_every_alert_links_to_its_runbook_section(render: Render) -> None:
    anchors = _runbook_anchors()

    for alert in _alerts(render, FULL_OPTIONS):
        url = alert["annotations"]["runbook_url"]
        assert url.endswith(f"#{alert['alert'].lower()}")
        assert alert["alert"].lower() in anchors, f"docs/runbook.md has no {alert['alert']}"


def test_dashboard_is_shipped_for_the_grafana_sidecar(render: Render) -> None:
    manifests = render({"monitoring": {"grafanaDashboard": {"enabled": True}}})
    config_map = one(manifests, "ConfigMap", f"{RELEASE}-agent-growth-dashboard")

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["agent-growth.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        used |= _metric_names(expr)
    assert used <= EXPORTED | FROM_ELSEWHERE
    # Every exported metric has a panel.
    assert {family for family, series in FAMILIES.items() if not series & used} == set()


def test_keda_query_reads_the_queue_depth_of_this_release(render: Render) -> None:
    keda = {"enabled": True, "serverAddress": "http://prom:9090"}
    manifests = render({"worker": {"autoscaling": {"keda": keda}}})
    (trigger,) = one(manifests, "ScaledObject", f"{RELEASE}-agent-growth-worker")["spec"][
        "triggers"
    ]

    assert _metric_names(trigger["metadata"]["query"]) == {"agent_growth_queue_depth"}
    assert f'app_kubernetes_io_instance="{RELEASE}"' in trigger["metadata"]["query"]


def test_scraping_covers_api_and_workers_with_release_labels(render: Render) -> None:
    manifests = render({"monitoring": {"serviceMonitor": {"enabled": True}}})
    service_monitor = one(manifests, "ServiceMonitor", f"{RELEASE}-agent-growth-api")
    pod_monitor = one(manifests, "PodMonitor", f"{RELEASE}-agent-growth-pods")

    for monitor in (service_monitor, pod_monitor):
        assert set(monitor["spec"]["podTargetLabels"]) == {
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }
    (expression,) = pod_monitor["spec"]["selector"]["matchExpressions"]
    assert expression["values"] == ["worker", "operator"]
    assert service_monitor["spec"]["endpoints"][0]["port"] == "http"
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_nothing_for_prometheus_or_grafana_is_rendered_by_default(render: Render) -> None:
    kinds = {m["kind"] for m in render()}

    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject"}
    assert not find(render(), "ConfigMap")


def test_runbook_links_point_at_its_own_sections() -> None:
    links = set(re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text()))

    assert links and links <= _runbook_anchors()
