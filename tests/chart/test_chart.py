"""The chart renders, lints and validates offline, with default and with non-default values.

Every rendered manifest is checked against the OpenAPI schema of a recent Kubernetes release;
custom resources whose definition lives in crds/ are checked against that definition, and those
of other projects (KEDA, Prometheus Operator) against the fields this chart relies on.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.chart.manifests import (
    CHART_DIR,
    CRD_DIR,
    FULL_OPTIONS,
    Manifest,
    Render,
    find,
    full_name,
    repository_crds,
    strip,
)

KUBERNETES_VERSION = "1.35.0"

# Kinds whose definitions are not Kubernetes' own nor in crds/: the fields the chart relies on.
FOREIGN_KINDS: dict[tuple[str, str], list[str]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): ["spec.scaleTargetRef.name", "spec.triggers"],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["spec.selector", "spec.endpoints"],
    ("monitoring.coreos.com/v1", "PodMonitor"): ["spec.selector", "spec.podMetricsEndpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["spec.groups"],
}

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dig(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj[part]
    return obj


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for crd in repository_crds():
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, crd["spec"]["names"]["kind"])] = version["schema"][
                "openAPIV3Schema"
            ]
    return schemas


def assert_valid(manifests: list[Manifest]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install -e '.[test]')",
    )
    own_crds = _crd_schemas()
    for manifest in manifests:
        body = strip(manifest)
        key = (body["apiVersion"], body["kind"])
        where = f"{manifest['__template__']}: {body['kind']} {body['metadata']['name']}"
        assert DNS_LABEL.match(body["metadata"]["name"]) and len(body["metadata"]["name"]) <= 63
        if key in own_crds:
            jsonschema.validate(body, own_crds[key])
        elif key in FOREIGN_KINDS:
            for field in FOREIGN_KINDS[key]:
                assert _dig(body, field), f"{where}: {field} is empty"
        else:
            try:
                kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_default_values_render_valid_kubernetes_manifests(render: Render) -> None:
    manifests = render()

    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "Job", "Secret", "ServiceAccount", "Role"} <= kinds
    assert len(find(manifests, "Deployment")) == 3
    assert_valid(manifests)


def test_every_option_switched_on_renders_valid_kubernetes_manifests(render: Render) -> None:
    manifests = render(FULL_OPTIONS)

    kinds = {m["kind"] for m in manifests}
    assert {"ScaledObject", "NetworkPolicy", "ServiceMonitor", "PodMonitor"} <= kinds
    assert {"PrometheusRule", "ConfigMap", "PodDisruptionBudget"} <= kinds
    assert_valid(manifests)


def test_cluster_wide_operator_without_cluster_mode_extras_renders_valid_manifests(
    render: Render,
) -> None:
    manifests = render(
        {
            "secrets": {"existingSecret": "agent-growth-credentials"},
            "operator": {"watch": {"clusterWide": True}},
            "worker": {"autoscaling": {"hpa": {"enabled": True}}},
        },
        is_upgrade=True,
    )

    assert find(manifests, "ClusterRole") and find(manifests, "HorizontalPodAutoscaler")
    assert_valid(manifests)


def test_the_crds_in_the_repository_are_valid_definitions() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    crds = repository_crds()

    assert "coveragerefreshes.agentgrowth.io" in {crd["metadata"]["name"] for crd in crds}
    for crd in crds:
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("values", [{}, FULL_OPTIONS], ids=["defaults", "every-option"])
def test_chart_passes_strict_lint(helm: Any, values: dict[str, Any]) -> None:
    report = helm.lint(CHART_DIR, values, strict=True, namespace="agents")

    # Severity 1 is informational ("icon is recommended"); 2 and up fail a strict lint.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


def test_chart_installs_the_crds_from_the_repository_crds_folder(chart: Any) -> None:
    link = CHART_DIR / "crds"

    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == CRD_DIR.resolve()
    shipped = {crd["name"]: crd["data"] for crd in chart.crds}
    expected = {f"crds/{path.name}": path.read_text() for path in CRD_DIR.glob("*.yaml")}
    assert shipped == expected


def test_chart_package_carries_the_crds_but_not_the_examples(helm: Any, tmp_path: Path) -> None:
    archive = Path(helm.package(CHART_DIR, destination=tmp_path))

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        packaged = {
            name.removeprefix("agent-growth/"): tar.extractfile(name).read().decode()  # type: ignore[union-attr]
            for name in names
            if name.startswith("agent-growth/crds/")
        }
    expected = {f"crds/{path.name}": path.read_text() for path in CRD_DIR.glob("*.yaml")}
    assert packaged == expected
    assert "agent-growth/values.schema.json" in names


def test_selectors_use_only_name_instance_and_component(render: Render) -> None:
    allowed = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }
    for manifest in render(FULL_OPTIONS):
        spec = manifest.get("spec", {})
        selector = spec.get("selector") or spec.get("podSelector")
        if manifest["kind"] == "Service":
            labels = set(selector)
        elif isinstance(selector, dict) and "matchLabels" in selector:
            labels = set(selector["matchLabels"])
        else:
            continue
        assert labels <= allowed, f"{manifest['kind']} {manifest['metadata']['name']}: {labels}"


def test_resource_names_follow_the_release(render: Render) -> None:
    names = {m["metadata"]["name"] for m in find(render(), "Deployment")}

    assert names == {full_name("api"), full_name("worker"), full_name("operator")}


def test_helpers_are_prefixed_with_the_chart_name() -> None:
    defined = []
    for template in (CHART_DIR / "templates").iterdir():
        defined += re.findall(r'define "([^"]+)"', template.read_text())

    assert defined and all(name.startswith("agent-growth.") for name in defined)
