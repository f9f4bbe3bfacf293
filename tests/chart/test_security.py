"""Least privilege: hardened pods, no Kubernetes access for workers, narrow Roles elsewhere."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.manifests import (
    FULL_OPTIONS,
    NAMESPACE,
    Manifest,
    Render,
    find,
    full_name,
    one,
)

# (apiGroup, resource) -> verbs the operator may hold: kopf watches and merge-patches, posts
# events, and the operator deletes finished resources; nobody sends a PUT.
OPERATOR_ALLOWED = {
    ("agentgrowth.io", "coveragerefreshes"): {"get", "list", "watch", "patch", "delete"},
    ("agentgrowth.io", "coveragerefreshes/status"): {"patch"},
    ("", "events"): {"create"},
    ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
}
OPERATOR_CLUSTER_ONLY = {
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
    ("", "namespaces"): {"list", "watch"},
}
# The API only creates resources; everything else it does goes through PostgreSQL.
API_ALLOWED = {("agentgrowth.io", "coveragerefreshes"): {"create"}}


def _pod_specs(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "Job"}:
            specs.append((manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]))
    return specs


def _grants(role: Manifest) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def _bound_service_accounts(manifests: list[Manifest]) -> set[str]:
    bound = set()
    for binding in find(manifests, "RoleBinding") + find(manifests, "ClusterRoleBinding"):
        bound |= {subject["name"] for subject in binding["subjects"]}
    return bound


@pytest.mark.parametrize("values", [{}, FULL_OPTIONS], ids=["defaults", "every-option"])
def test_every_pod_runs_hardened(render: Render, values: dict[str, Any]) -> None:
    specs = _pod_specs(render(values))

    assert len(specs) == 4  # api, worker, operator, migration Job
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], name


def test_every_container_has_resources_and_probes(render: Render) -> None:
    for name, spec in _pod_specs(render()):
        container = spec["containers"][0]
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        if not name.endswith("-migrate"):
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
    api = one(render(), "Deployment", full_name("api"))["spec"]["template"]["spec"]
    assert api["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("values", [{}, FULL_OPTIONS], ids=["defaults", "every-option"])
def test_workers_and_migrations_have_no_kubernetes_access(
    render: Render, values: dict[str, Any]
) -> None:
    manifests = render(values)
    worker = one(manifests, "Deployment", full_name("worker"))["spec"]["template"]["spec"]
    job = one(manifests, "Job", full_name("migrate"))["spec"]["template"]["spec"]

    assert worker["automountServiceAccountToken"] is False
    assert job["automountServiceAccountToken"] is False
    for account in (worker["serviceAccountName"], job["serviceAccountName"]):
        assert one(manifests, "ServiceAccount", account)["automountServiceAccountToken"] is False
        assert account not in _bound_service_accounts(manifests)


def test_operator_role_grants_only_what_the_operator_uses(render: Render) -> None:
    manifests = render()
    role = one(manifests, "Role", full_name("operator"))

    assert role["metadata"]["namespace"] == NAMESPACE
    grants = _grants(role)
    assert grants == OPERATOR_ALLOWED
    assert not find(manifests, "ClusterRole") and not find(manifests, "ClusterRoleBinding")


def test_operator_gets_a_role_in_each_watched_namespace(render: Render) -> None:
    manifests = render({"operator": {"watch": {"namespaces": ["team-a", "team-b"]}}})

    roles = find(manifests, "Role", full_name("operator"))
    assert {role["metadata"]["namespace"] for role in roles} == {"team-a", "team-b"}
    for role in roles:
        assert _grants(role) == OPERATOR_ALLOWED
    bindings = find(manifests, "RoleBinding", full_name("operator"))
    assert {b["metadata"]["namespace"] for b in bindings} == {"team-a", "team-b"}
    assert all(b["subjects"][0]["namespace"] == NAMESPACE for b in bindings)


def test_cluster_wide_operator_adds_only_namespaces_and_cluster_peering(render: Render) -> None:
    manifests = render({"operator": {"watch": {"clusterWide": True}}})

    (cluster_role,) = find(manifests, "ClusterRole")
    expected = {**OPERATOR_ALLOWED, **OPERATOR_CLUSTER_ONLY}
    del expected[("kopf.dev", "kopfpeerings")]
    assert _grants(cluster_role) == expected
    assert not find(manifests, "Role", full_name("operator"))


def test_no_role_uses_wildcards_or_touches_secrets(render: Render) -> None:
    manifests = render(FULL_OPTIONS) + render({"operator": {"watch": {"clusterWide": True}}})

    for role in find(manifests, "Role") + find(manifests, "ClusterRole"):
        for (group, resource), verbs in _grants(role).items():
            assert "*" not in {group, resource} | verbs, role["metadata"]["name"]
            assert resource not in {"secrets", "pods", "configmaps"}, role["metadata"]["name"]


def test_api_may_only_create_read_and_patch_coverage_refreshes(render: Render) -> None:
    manifests = render({"kubernetes": {"namespace": "refreshes"}})
    role = one(manifests, "Role", full_name("api"))

    assert role["metadata"]["namespace"] == "refreshes"
    assert _grants(role) == API_ALLOWED
    api = one(manifests, "Deployment", full_name("api"))["spec"]["template"]["spec"]
    assert api["automountServiceAccountToken"] is True


def test_without_cluster_mode_nothing_talks_to_kubernetes(render: Render) -> None:
    manifests = render({"kubernetes": {"enabled": False}})

    assert not find(manifests, "Role") and not find(manifests, "RoleBinding")
    assert not find(manifests, "Deployment", full_name("operator"))
    for _, spec in _pod_specs(manifests):
        assert spec["automountServiceAccountToken"] is False
    env = one(manifests, "Deployment", full_name("api"))["spec"]["template"]["spec"]
    values = {e["name"]: e.get("value") for e in env["containers"][0]["env"]}
    assert values["AGENT_GROWTH_KUBERNETES"] == "off"
