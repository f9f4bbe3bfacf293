"""values.yaml is the chart's manual and values.schema.json its guard.

The schema must reject a misspelt key at any depth and a value of the wrong type, before anything
is rendered; every key a user can set must carry a comment in values.yaml.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from agent_growth.settings import Settings, postgres_url
from tests.chart.manifests import CHART_DIR, FULL_OPTIONS

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())

# Schemas for Kubernetes objects passed through unchanged (affinity, securityContext, EnvVar
# lists...): the API server validates them, so the chart's schema only checks they are objects.
PASSTHROUGH = {
    "#/definitions/kubernetesObject",
    "#/definitions/kubernetesList",
    "#/properties/global",  # Helm's own, shared with subcharts
}

# Container resources: requests and limits are Kubernetes' own keys.
DOCUMENTED_BY_KUBERNETES = {"#/definitions/resources"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCount": 3}, "replicaCount"),
        ({"api": {"replicass": 3}}, "replicass"),
        ({"worker": {"autoscaling": {"keda": {"serverAdress": "http://p:9090"}}}}, "serverAdress"),
        ({"monitoring": {"prometheusRule": {"thresholds": {"queueDeph": 5}}}}, "queueDeph"),
        ({"api": {"livenessProbe": {"enabled": True, "path": "/x"}}}, "path"),
    ],
    ids=["top-level", "api", "keda", "thresholds", "probe"],
)
def test_schema_rejects_an_unknown_key(chart: Any, helm: Any, values: dict, named: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(values)

    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"worker": {"concurrency": "four"}}, "concurrency"),
        ({"api": {"replicas": "2"}}, "replicas"),
        ({"kubernetes": {"enabled": "yes"}}, "enabled"),
        ({"config": {"environment": "staging"}}, "environment"),
        ({"secrets": {"databaseUrl": "mysql://db/ag"}}, "databaseUrl"),
        ({"worker": {"drainTimeoutSeconds": -1}}, "drainTimeoutSeconds"),
        ({"operator": {"watch": {"namespaces": "team-a"}}}, "namespaces"),
    ],
    ids=["string-for-int", "quoted-int", "string-for-bool", "enum", "url", "negative", "list"],
)
def test_schema_rejects_a_wrong_type_or_value(
    chart: Any, helm: Any, values: dict, named: str
) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(values)

    assert named in str(caught.value)


def test_schema_accepts_the_defaults_and_the_full_example(chart: Any) -> None:
    chart.validate_schema({})
    chart.validate_schema(FULL_OPTIONS)


def _object_schemas(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, child in node.items():
            yield from _object_schemas(child, f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _object_schemas(child, f"{path}/{index}")


def test_schema_closes_every_object_it_describes() -> None:
    for path, node in _object_schemas(SCHEMA, "#"):
        if path in PASSTHROUGH or path.startswith("#/definitions/kubernetesList/"):
            continue
        # The if/then rules only tighten values the main schema describes and closes.
        if path.startswith(("#/if", "#/then")):
            continue
        closed = node.get("additionalProperties")
        # Either a closed object with named properties, or a map whose values have a schema.
        assert closed is False or isinstance(closed, dict), f"{path} accepts unknown keys"
        if closed is False:
            assert node.get("properties"), f"{path} is closed but names no properties"


def _documented_paths() -> Iterator[tuple[str, bool]]:
    """(dotted key, has a comment) for every key line of values.yaml."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        previous = lines[number - 1].strip() if number else ""
        yield ".".join(k for _, k in stack), previous.startswith("#") or " # " in rest


def _schema_for(dotted: str) -> dict[str, Any] | None:
    """The schema of a values key, or None where the chart does not describe the key itself."""
    node: dict[str, Any] = SCHEMA
    for key in dotted.split("."):
        while "$ref" in node:
            if node["$ref"] in DOCUMENTED_BY_KUBERNETES:
                return None
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
        properties = node.get("properties")
        if not properties or key not in properties:
            return None
        node = properties[key]
    return node


def test_every_key_the_schema_names_is_commented_in_values_yaml() -> None:
    # Keys inside pass-through Kubernetes objects (resources, securityContext) are Kubernetes'
    # own and documented there; every key of the chart's own structure needs a comment.
    undocumented = [
        path
        for path, commented in _documented_paths()
        if not commented and _schema_for(path) is not None
    ]

    assert undocumented == []


def test_production_refuses_short_api_keys_before_anything_is_deployed(
    chart: Any, helm: Any
) -> None:
    strong = "k" * 24
    chart.validate_schema({"secrets": {"apiKeys": f"{strong}, {strong}x"}})
    chart.validate_schema({"config": {"environment": "development"}, "secrets": {"apiKeys": "ab"}})

    for keys in ("short", f"{strong},short"):
        with pytest.raises(helm.HelmValuesError) as caught:
            chart.validate_schema({"secrets": {"apiKeys": keys}})
        assert "apiKeys" in str(caught.value)


def test_the_settings_the_chart_offers_are_the_ones_the_code_accepts() -> None:
    offered = SCHEMA["properties"]["config"]["properties"]
    fields = Settings.model_fields

    for key, field in (("environment", "environment"), ("logLevel", "log_level")):
        assert set(offered[key]["enum"]) == set(typing.get_args(fields[field].annotation)), key
    assert set(offered["logFormat"]["enum"]) == set(
        typing.get_args(fields["log_format"].annotation)
    )
    for url in ("postgres://a@db/ag", "postgresql://a@db/ag", "postgresql+psycopg://a@db/ag"):
        assert re.match(
            SCHEMA["properties"]["secrets"]["properties"]["databaseUrl"]["pattern"], url
        )
        assert postgres_url(url) == "postgresql+psycopg://a@db/ag"
