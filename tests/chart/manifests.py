"""Paths, names and small lookups shared by the chart tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "agent-growth"
CRD_DIR = REPO_ROOT / "crds"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
RELEASE = "growth"
NAMESPACE = "agents"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]

# Every optional part switched on, and most defaults changed.
FULL_OPTIONS: dict[str, Any] = {
    "fullnameOverride": "",
    "commonLabels": {"team": "search"},
    "image": {
        "repository": "registry.example.com/agent-growth",
        "digest": "sha256:" + "ab" * 32,
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "config": {
        "logLevel": "DEBUG",
        "extraEnv": [{"name": "AGENT_GROWTH_LEASE_TTL_S", "value": "10"}],
    },
    "secrets": {
        "databaseUrl": "postgresql+psycopg://ag:pw@db.example.internal:5432/ag",
        "redisUrl": "rediss://:pw@redis.example.internal:6380/0",
        "apiKeys": "key-one-of-twenty-four-chars,key-two-of-twenty-four-chars",
        "webhookSecret": "signing-secret",
    },
    "kubernetes": {"namespace": "refreshes"},
    "api": {
        "replicas": 3,
        "service": {"type": "LoadBalancer", "annotations": {"example.com/internal": "true"}},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ag"}],
        "podAnnotations": {"example.com/scrape": "true"},
    },
    "worker": {
        "concurrency": 8,
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 20,
            "keda": {
                "enabled": True,
                "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
            },
        },
    },
    "operator": {
        "replicas": 2,
        "watch": {"namespaces": ["refreshes", "team-b"]},
        "metrics": {"enabled": True},
    },
    "networkPolicy": {
        "enabled": True,
        "apiFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "egress": {
            "enabled": True,
            "to": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 5432}]}],
        },
    },
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True, "namespace": "grafana"},
    },
}


def strip(manifest: Manifest) -> Manifest:
    """The manifest without the test's own bookkeeping key."""
    return {key: value for key, value in manifest.items() if key != "__template__"}


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def full_name(role: str | None = None) -> str:
    base = f"{RELEASE}-agent-growth"
    return f"{base}-{role}" if role else base


def repository_crds() -> list[Manifest]:
    """The CRDs in the repository's crds/ folder (the examples below it are not CRDs)."""
    crds: list[Manifest] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crds.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return crds


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
