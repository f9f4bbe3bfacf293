"""What the API server does with a CRD's structural schema: defaults, pruning and validation.

Used by the CRD test and by the test emulator, so that both judge objects the same way a real
API server would: defaults are filled in, fields the schema does not declare are dropped
(unless `x-kubernetes-preserve-unknown-fields` says otherwise), and invalid values are refused.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "coveragerefresh.yaml"
PEERING_CRD_PATH = ROOT / "crds" / "kopf-peering.yaml"
EXAMPLES_DIR = ROOT / "crds" / "examples"

# Fields the API server manages itself, never pruned by the schema.
_ROOT_KEYS = ("apiVersion", "kind", "metadata")

_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.tzinfo is not None


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def openapi_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    for served in crd["spec"]["versions"]:
        if version is None or served["name"] == version:
            return dict(served["schema"]["openAPIV3Schema"])
    raise LookupError(f"version {version} not in CRD {crd['metadata']['name']}")


def apply_defaults(schema: dict[str, Any], value: Any) -> None:
    """Fill in `default`s where the parent object exists and the field does not (in place)."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(schema["items"], item)


def prune(schema: dict[str, Any], value: Any, *, root: bool = False) -> Any:
    """A copy of `value` without the fields the structural schema does not declare."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return copy.deepcopy(value)
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        pruned: dict[str, Any] = {}
        for name, item in value.items():
            if root and name in _ROOT_KEYS:
                pruned[name] = copy.deepcopy(item)
            elif properties is not None and name in properties:
                pruned[name] = prune(properties[name], item)
            elif isinstance(additional, dict):
                pruned[name] = prune(additional, item)
            elif properties is None and additional is None and schema.get("type") != "object":
                pruned[name] = copy.deepcopy(item)
        return pruned
    if isinstance(value, list) and "items" in schema:
        return [prune(schema["items"], item) for item in value]
    return copy.deepcopy(value)


def validation_errors(schema: dict[str, Any], value: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(schema, format_checker=_FORMATS)
    return sorted(
        f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(value)
    )


def admit(schema: dict[str, Any], value: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What the API server stores for `value`, and why it would refuse it (empty: it would not)."""
    stored = prune(schema, value, root=True)
    apply_defaults(schema, stored)
    return stored, validation_errors(schema, stored)
