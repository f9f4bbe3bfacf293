"""Fixtures for the Helm chart tests: offline rendering and linting, no cluster and no database.

Rendering uses helm-python-sdk, which embeds Helm's Go SDK as a shared library, so no `helm`
binary is needed; manifests are checked against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate. Both come with the `test` extra; a test whose tool is missing is skipped
with the reason.

The chart tests touch neither PostgreSQL nor Redis, so the suite-wide autouse fixture that
empties them is replaced here by one that does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.chart.manifests import CHART_DIR, NAMESPACE, RELEASE, Manifest, Render


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """Overrides the suite's database and Redis clean-up: chart tests use neither."""
    yield


@pytest.fixture(scope="session")
def helm() -> Any:
    helm_python = pytest.importorskip(
        "helm_python",
        reason="helm-python-sdk is not installed (pip install -e '.[test]'); it renders the chart",
    )
    helm_python.disable_logging()
    return helm_python


@pytest.fixture(scope="session")
def chart(helm: Any) -> Iterator[Any]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Render:
    """Renders the chart with the given values into a list of manifests (NOTES.txt left out).

    Each manifest carries the template it came from under the key `__template__`.
    """

    def _render(
        values: dict[str, Any] | None = None, *, is_upgrade: bool = False
    ) -> list[Manifest]:
        rendered = chart.render(
            values or {},
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=not is_upgrade,
            is_upgrade=is_upgrade,
        )
        manifests: list[Manifest] = []
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt"):
                continue
            for document in yaml.safe_load_all(text):
                if document:
                    document["__template__"] = template
                    manifests.append(document)
        return manifests

    return _render
