"""What the workloads do with the values: migrations, draining, autoscaling, secrets, commands."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.chart.manifests import NAMESPACE, Manifest, Render, find, full_name, one

HOOK = "helm.sh/hook"
WEIGHT = "helm.sh/hook-weight"


def _pod(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(manifests, kind, name)["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _decoded(secret: Manifest) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_migration_job_runs_as_a_hook_before_install_and_upgrade(render: Render) -> None:
    manifests = render()
    job = one(manifests, "Job", full_name("migrate"))
    annotations = job["metadata"]["annotations"]

    assert annotations[HOOK] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    # What the Job needs exists before it: hooks run before the release's own resources.
    account = one(
        manifests, "ServiceAccount", job["spec"]["template"]["spec"]["serviceAccountName"]
    )
    secret_name = _env(job["spec"]["template"]["spec"]["containers"][0])[
        "AGENT_GROWTH_DATABASE_URL"
    ]["secretKeyRef"]["name"]
    secret = one(manifests, "Secret", secret_name)
    for dependency in (account, secret):
        assert dependency["metadata"]["annotations"][HOOK] == annotations[HOOK]
        assert int(dependency["metadata"]["annotations"][WEIGHT]) < int(annotations[WEIGHT])


def test_migration_hook_secret_carries_the_same_settings_as_the_release(render: Render) -> None:
    manifests = render()
    main = _decoded(one(manifests, "Secret", full_name()))
    hook = _decoded(one(manifests, "Secret", full_name("migrate")))

    # The generated API key too: production settings refuse to start without a real one.
    assert hook == main
    assert len(main["api-keys"]) >= 32 and main["api-keys"] != "dev-key"


def test_explicit_secrets_are_stored_as_given(render: Render) -> None:
    keys = "first-key-of-24-characters,second-key-of-24-characters"
    values = {"secrets": {"apiKeys": keys, "webhookSecret": "s3cret"}}
    stored = _decoded(one(render(values), "Secret", full_name()))

    assert stored["api-keys"] == keys and stored["webhook-secret"] == "s3cret"
    assert stored["database-url"].startswith("postgresql+psycopg://")


def test_existing_secret_is_used_everywhere_and_no_secret_is_rendered(render: Render) -> None:
    values = {
        "secrets": {
            "existingSecret": "ag-credentials",
            "existingSecretKeys": {"databaseUrl": "DB", "redisUrl": "REDIS", "apiKeys": "KEYS"},
        }
    }
    manifests = render(values)

    assert not find(manifests, "Secret")
    for kind, name in [
        ("Deployment", full_name("api")),
        ("Deployment", full_name("worker")),
        ("Deployment", full_name("operator")),
        ("Job", full_name("migrate")),
    ]:
        env = _env(_pod(manifests, kind, name)["containers"][0])
        refs = {
            variable: env[variable]["secretKeyRef"]
            for variable in ("AGENT_GROWTH_DATABASE_URL", "AGENT_GROWTH_REDIS_URL")
        }
        assert refs["AGENT_GROWTH_DATABASE_URL"] == {"name": "ag-credentials", "key": "DB"}
        assert refs["AGENT_GROWTH_REDIS_URL"] == {"name": "ag-credentials", "key": "REDIS"}
        assert env["AGENT_GROWTH_API_KEYS"]["secretKeyRef"]["key"] == "KEYS"
        assert env["AGENT_GROWTH_WEBHOOK_SECRET"]["secretKeyRef"]["optional"] is True


def test_pods_restart_when_the_chart_managed_secret_changes(render: Render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        template = one(render(values), "Deployment", full_name("worker"))["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/secret"])

    first = checksum({"secrets": {"apiKeys": "a" * 24}})
    assert first == checksum({"secrets": {"apiKeys": "a" * 24}})
    assert first != checksum({"secrets": {"apiKeys": "b" * 24}})


def test_image_and_settings_reach_every_container(render: Render) -> None:
    values = {
        "image": {"repository": "registry.example/ag", "tag": "1.2.3"},
        "config": {"logFormat": "text", "extraEnv": [{"name": "EXTRA", "value": "1"}]},
    }
    manifests = render(values)

    for kind, name in [("Deployment", full_name(r)) for r in ("api", "worker", "operator")] + [
        ("Job", full_name("migrate"))
    ]:
        container = _pod(manifests, kind, name)["containers"][0]
        env = _env(container)
        assert container["image"] == "registry.example/ag:1.2.3"
        assert env["AGENT_GROWTH_ENVIRONMENT"] == "production"
        assert env["AGENT_GROWTH_LOG_FORMAT"] == "text" and env["EXTRA"] == "1"


def test_worker_grace_period_outlasts_the_longest_deadline(render: Render) -> None:
    worker = _pod(render(), "Deployment", full_name("worker"))
    env = _env(worker["containers"][0])

    assert worker["terminationGracePeriodSeconds"] > 3600
    assert int(env["AGENT_GROWTH_WORKER_DRAIN_TIMEOUT_S"]) == 3600
    assert worker["terminationGracePeriodSeconds"] > int(env["AGENT_GROWTH_WORKER_DRAIN_TIMEOUT_S"])

    shorter = render({"worker": {"drainTimeoutSeconds": 300, "shutdownMarginSeconds": 30}})
    assert _pod(shorter, "Deployment", full_name("worker"))["terminationGracePeriodSeconds"] == 330


def test_worker_command_carries_concurrency_and_metrics_port(render: Render) -> None:
    worker = _pod(
        render({"worker": {"concurrency": 6, "metricsPort": 9200}}),
        "Deployment",
        full_name("worker"),
    )
    container = worker["containers"][0]

    assert container["args"] == ["worker", "--concurrency=6", "--metrics-port=9200"]
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]


def test_keda_scales_workers_on_queue_depth(render: Render) -> None:
    manifests = render(
        {
            "worker": {
                "concurrency": 3,
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": 30,
                    "keda": {"enabled": True, "serverAddress": "http://prom:9090"},
                    "hpa": {"enabled": True},
                },
            }
        }
    )
    scaled = one(manifests, "ScaledObject", full_name("worker"))
    (trigger,) = scaled["spec"]["triggers"]

    assert scaled["spec"]["scaleTargetRef"]["name"] == full_name("worker")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 30)
    assert trigger["type"] == "prometheus"
    assert "agent_growth_queue_depth" in trigger["metadata"]["query"]
    assert f'namespace="{NAMESPACE}"' in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == "6"  # 2 x concurrency
    # KEDA takes precedence over the HPA, and the Deployment leaves replicas to the autoscaler.
    assert not find(manifests, "HorizontalPodAutoscaler")
    assert "replicas" not in one(manifests, "Deployment", full_name("worker"))["spec"]


def test_keda_without_a_prometheus_address_fails_naming_the_key(render: Render, helm: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match="worker.autoscaling.keda.serverAddress"):
        render({"worker": {"autoscaling": {"keda": {"enabled": True}}}})


def test_hpa_scales_workers_on_cpu_when_keda_is_off(render: Render) -> None:
    manifests = render({"worker": {"autoscaling": {"hpa": {"enabled": True}, "maxReplicas": 7}}})
    hpa = one(manifests, "HorizontalPodAutoscaler", full_name("worker"))

    assert hpa["spec"]["maxReplicas"] == 7
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in one(manifests, "Deployment", full_name("worker"))["spec"]


def test_without_autoscaling_the_worker_count_is_fixed(render: Render) -> None:
    manifests = render({"worker": {"replicas": 5}})

    assert one(manifests, "Deployment", full_name("worker"))["spec"]["replicas"] == 5
    assert not find(manifests, "ScaledObject") and not find(manifests, "HorizontalPodAutoscaler")


def test_operator_watches_the_configured_namespaces(render: Render) -> None:
    default = _pod(render(), "Deployment", full_name("operator"))["containers"][0]
    several = _pod(
        render({"operator": {"watch": {"namespaces": ["a", "b"]}}}),
        "Deployment",
        full_name("operator"),
    )["containers"][0]
    cluster = _pod(
        render({"operator": {"watch": {"clusterWide": True}}}), "Deployment", full_name("operator")
    )["containers"][0]

    assert "--liveness=http://0.0.0.0:8080/healthz" in default["args"]
    assert "--metrics-port=9100" in default["args"]
    assert [a for a in default["args"] if a.startswith("--namespace")] == [
        f"--namespace={NAMESPACE}"
    ]
    assert [a for a in several["args"] if a.startswith("--namespace")] == [
        "--namespace=a",
        "--namespace=b",
    ]
    assert not [a for a in cluster["args"] if a.startswith("--namespace")]
    assert "--all-namespaces" in cluster["args"] and "--all-namespaces" not in default["args"]
    assert default["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_operator_is_replaced_not_rolled(render: Render) -> None:
    operator = one(render(), "Deployment", full_name("operator"))

    assert operator["spec"]["strategy"] == {"type": "Recreate"}


def test_each_watched_namespace_gets_a_peering_object_for_this_release(render: Render) -> None:
    manifests = render({"operator": {"watch": {"namespaces": ["a", "b"]}}})
    peerings = find(manifests, "KopfPeering")
    env = _env(_pod(manifests, "Deployment", full_name("operator"))["containers"][0])

    assert {p["metadata"]["namespace"] for p in peerings} == {"a", "b"}
    assert {p["metadata"]["name"] for p in peerings} == {env["AGENT_GROWTH_OPERATOR_PEERING_NAME"]}


def test_pod_disruption_budgets_cover_every_role(render: Render) -> None:
    budgets = find(render(), "PodDisruptionBudget")

    assert {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for b in budgets
    } == {
        "api",
        "worker",
        "operator",
    }
    assert all("minAvailable" not in b["spec"] for b in budgets)
