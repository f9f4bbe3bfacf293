"""A Kubernetes API server for the operator tests, made stricter than plain kmock.

kmock's `KubernetesEmulator` stores objects and streams watch events, but a real API server
does more, and an operator that passes against less can still fail in a cluster. This subclass
adds, for the resources it is told about:

- `metadata.resourceVersion` from one cluster-wide counter, `uid`, `creationTimestamp`, and
  `generation` (1 on create, +1 only when something other than metadata and status changes,
  or when the deletion timestamp is set);
- the status subresource rules: `status` in a create or a main-resource patch is ignored, and a
  patch of `/status` changes nothing but the status;
- the CRD's structural schema: defaults filled in, undeclared fields pruned (also in status,
  which is what makes "the status survives a strict schema" mean something), invalid objects
  refused with 422;
- 201 on create, 409 for an existing name or a stale `metadata.resourceVersion` in a patch,
  404 for a missing object, `generateName`;
- deletion blocked by finalizers: `deletionTimestamp` is set and the object stays until its
  last finalizer is removed;
- watches that start from a `resourceVersion` (replaying what happened since, or 410 Gone when
  that is older than the kept history), that end after `timeoutSeconds`, and that list existing
  objects as ADDED only when no version is given;
- merge patches (RFC 7386), JSON patches (RFC 6902), strategic merge patches taken as merge
  patches, and label selectors with `=`, `==` and `!=`;
- lists in pages (`limit` and `continue`), over the objects alive when each page is served;
- requests refused with 403 Forbidden for the (method, plural) pairs in `forbidden`, as a Role
  without that verb would.

What it still does not emulate: authentication and RBAC (beyond `forbidden`), admission
webhooks, server-side apply, strategic-merge list semantics, field selectors, the snapshot a
paged list keeps, bookmarks, dry runs, CEL validation rules, garbage collection by owner
references, namespaces as objects (they are a fixed set, `namespaces`, and objects may be
created outside them), and protobuf or table output (`kubectl get` prints its columns from JSON
itself).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import random
import string
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import apps, dicts, references, rendering

from tests.operator import crd_schema

# How many watch events are kept for watchers that resume from a resourceVersion.
HISTORY_LIMIT = 10_000

_MUTATING = {"POST", "PATCH", "PUT", "DELETE"}


@dataclass
class _Kind:
    resource: references.resource
    kind: str
    namespaced: bool
    status_subresource: bool
    schema: dict[str, Any] | None


@dataclass
class _WatchEvent:
    rv: int
    resource: references.resource
    type: str
    obj: dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _essence(obj: dict[str, Any]) -> dict[str, Any]:
    """What `generation` tracks: everything but metadata and status."""
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _api_version(resource: references.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": name}}


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={})


@attrs.define(kw_only=True)
class KubernetesServer(kmock.KubernetesEmulator):
    """kmock's emulator with the rules listed in the module docstring."""

    namespaces: set[str] = attrs.field(factory=lambda: {"default"})
    """Namespaces that exist; add to it before the operator starts, as `kubectl create ns` would."""

    forbidden: set[tuple[str, str]] = attrs.field(factory=set)
    """(method, plural) pairs refused with 403, e.g. `("DELETE", "coveragerefreshes")`."""

    watch_timeout_s: float | None = None
    """Server-side cap on a watch request, as `--min-request-timeout` does on a real server."""

    _kinds: dict[references.resource, _Kind] = attrs.field(factory=dict, init=False)
    _rv: int = attrs.field(default=1, init=False)
    _history: list[_WatchEvent] = attrs.field(factory=list, init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    # Declaring what the server serves.

    def install_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            status = "status" in (version.get("subresources") or {})
            self._declare(
                resource,
                kind=names["kind"],
                namespaced=spec["scope"] == "Namespaced",
                status_subresource=status,
                schema=crd_schema.openapi_schema(crd, version["name"]),
                singular=names.get("singular"),
                shortnames=names.get("shortNames", ()),
                categories=names.get("categories", ()),
            )

    def install_crd_file(self, path: Path) -> None:
        for document in crd_schema.load_documents(path):
            self.install_crd(document)

    def install_core(self) -> None:
        """Core kinds: events (kopf posts them), and namespaces (kopf watches them)."""
        self._declare(kmock.resource("", "v1", "events"), kind="Event", namespaced=True)
        self._declare(kmock.resource("", "v1", "namespaces"), kind="Namespace", namespaced=False)

    def _declare(
        self,
        resource: references.resource,
        *,
        kind: str,
        namespaced: bool,
        status_subresource: bool = False,
        schema: dict[str, Any] | None = None,
        singular: str | None = None,
        shortnames: Any = (),
        categories: Any = (),
    ) -> None:
        self._kinds[resource] = _Kind(resource, kind, namespaced, status_subresource, schema)
        self.resources[resource] = kmock.ResourceInfo(
            kind=kind,
            singular=singular or kind.lower(),
            namespaced=namespaced,
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            shortnames=set(shortnames),
            categories=set(categories),
            subresources={"status"} if status_subresource else set(),
        )

    # Reading the state from tests.

    def read(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def writes(self, *, name: str | None = None) -> list[rendering.Request]:
        """Requests that changed something, optionally only those about the object `name`."""
        found = []
        for request in list(self._requests):
            if request.method.value not in _MUTATING or request.resource is None:
                continue
            if name is None:
                found.append(request)
                continue
            data = request.data if isinstance(request.data, dict) else {}
            involved = data.get("involvedObject") or {}
            if request.name == name or (
                isinstance(involved, dict) and involved.get("name") == name
            ):
                found.append(request)
        return found

    def lists(self, plural: str) -> list[rendering.Request]:
        """List requests (watches left out) for the resources `plural`, in order."""
        return [
            request
            for request in list(self._requests)
            if request.method.value == "GET"
            and request.resource is not None
            and request.resource.plural == plural
            and request.name is None
            and request.params.get("watch") != "true"
        ]

    # Serving.

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock cannot parse the namespaces' URLs, so they are served here.
        path = raw_request.path.rstrip("/")
        if path == "/api/v1/namespaces":
            return await self._serve_namespaces(raw_request)
        if path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
            name = path.rsplit("/", 1)[1]
            if name in self.namespaces:
                return aiohttp.web.json_response(_namespace(name))
            return await self._render_error(
                _error(404, "NotFound", f"namespace {name!r} not found")
            )
        return await super().__call__(raw_request)

    async def _serve_namespaces(
        self, raw_request: aiohttp.web.BaseRequest
    ) -> aiohttp.web.StreamResponse:
        """The namespaces in `self.namespaces`; they do not change while watched."""
        items = [_namespace(name) for name in sorted(self.namespaces)]
        if raw_request.query.get("watch") != "true":
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "NamespaceList",
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": items,
                }
            )
        response = aiohttp.web.StreamResponse()
        await response.prepare(raw_request)
        if raw_request.query.get("resourceVersion") in (None, "", "0"):
            for item in items:
                await response.write(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
        timeout_s = float(raw_request.query.get("timeoutSeconds", 3600))
        await asyncio.sleep(min(timeout_s, self.watch_timeout_s or timeout_s))
        await response.write_eof()
        return response

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        kind = self._kinds.get(request.resource) if request.resource is not None else None
        if kind is not None and (request.method.value, kind.resource.plural) in self.forbidden:
            verb = request.method.value.lower()
            return await self._render_error(
                _error(403, "Forbidden", f"cannot {verb} {kind.resource.plural}: forbidden")
            )
        if kind is not None and request.method.value in _MUTATING:
            try:
                async with self._lock:
                    status, body = self._mutate(kind, request)
            except kmock.KubernetesError as exc:
                return await self._render_error(exc)
            return aiohttp.web.json_response(body, status=status)
        # Reads and discovery go through kmock's reactions, whose fallbacks are ours below.
        return await apps.RawHandler._handle(self, request)

    def _mutate(self, kind: _Kind, request: rendering.Request) -> tuple[int, dict[str, Any]]:
        method = request.method.value
        if method == "POST" and request.name is None:
            return 201, self._create(kind, request)
        if request.name is None:
            raise _error(405, "MethodNotAllowed", f"{method} on a collection is not supported")
        if method in ("PATCH", "PUT"):
            return 200, self._update(kind, request)
        if method == "DELETE":
            return 200, self._delete(kind, request)
        raise _error(405, "MethodNotAllowed", f"{method} is not supported")

    def _key(self, kind: _Kind, namespace: str | None, name: str) -> Any:
        return (kind.resource, namespace if kind.namespaced else None, name)

    def _current(self, kind: _Kind, request: rendering.Request) -> dict[str, Any]:
        key = self._key(kind, request.namespace, str(request.name))
        if key not in self.objects or self.objects[key].deleted:
            raise _error(404, "NotFound", f"{kind.resource.plural} {request.name!r} not found")
        return copy.deepcopy(self.objects[key].raw)

    def _admit(self, kind: _Kind, obj: dict[str, Any]) -> dict[str, Any]:
        if kind.schema is None:
            return obj
        stored, errors = crd_schema.admit(kind.schema, obj)
        if errors:
            raise _error(422, "Invalid", f"{kind.kind} is invalid: {'; '.join(errors)}")
        return stored

    def _record(self, kind: _Kind, event_type: str, obj: dict[str, Any]) -> None:
        self._history.append(_WatchEvent(self._rv, kind.resource, event_type, copy.deepcopy(obj)))
        del self._history[:-HISTORY_LIMIT]
        self._changed.set()
        self._changed = asyncio.Event()

    def _bump(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _create(self, kind: _Kind, request: rendering.Request) -> dict[str, Any]:
        obj = copy.deepcopy(request.data or {})
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = meta["generateName"] + suffix
        if not meta.get("name"):
            raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
        namespace = request.namespace or meta.get("namespace")
        if kind.namespaced:
            meta["namespace"] = namespace
        key = self._key(kind, namespace, meta["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise _error(409, "AlreadyExists", f"{kind.resource.plural} {meta['name']!r} exists")

        if kind.status_subresource:
            obj.pop("status", None)
        obj.setdefault("apiVersion", _api_version(kind.resource))
        obj.setdefault("kind", kind.kind)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        for field in ("deletionTimestamp", "resourceVersion"):
            meta.pop(field, None)
        obj = self._admit(kind, obj)
        self._bump(obj)

        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        self._record(kind, "ADDED", obj)
        return obj

    def _update(self, kind: _Kind, request: rendering.Request) -> dict[str, Any]:
        current = self._current(kind, request)
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0]
        data = request.data
        if request.method.value == "PUT":
            patched = copy.deepcopy(data)
        elif content_type == "application/json-patch+json":
            try:
                patched = jsonpatch.apply_patch(current, data, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                # A failed `test` operation included: the real server answers 422 as well.
                raise _error(422, "Invalid", f"the JSON patch cannot be applied: {exc}") from exc
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            patched = dict(dicts.merge_patch_dict(current, data))
        else:
            raise _error(415, "UnsupportedMediaType", f"patch type {content_type} not supported")

        # Optimistic concurrency: a resourceVersion in the request must be the current one.
        wanted = (
            ((data or {}).get("metadata") or {}).get("resourceVersion")
            if isinstance(data, dict)
            else None
        )
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", "the object has been modified; reload and try again")

        if kind.status_subresource:
            if request.subresource == "status":
                stored = copy.deepcopy(current)
                if "status" in patched:
                    stored["status"] = patched["status"]
                else:
                    stored.pop("status", None)
                patched = stored
            else:
                if "status" in current:
                    patched["status"] = current["status"]
                else:
                    patched.pop("status", None)

        # The server owns these; clients cannot change them.
        meta = patched.setdefault("metadata", {})
        for field in (
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "generation",
            "deletionTimestamp",
            "resourceVersion",
        ):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        patched = self._admit(kind, patched)
        if _essence(patched) != _essence(current):
            meta = patched["metadata"]
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if patched == current:
            return current  # a no-op write changes nothing, not even the resourceVersion

        self._bump(patched)
        key = self._key(kind, request.namespace, str(request.name))
        if patched["metadata"].get("deletionTimestamp") and not patched["metadata"].get(
            "finalizers"
        ):
            self.objects[key].history.append(patched)
            self.objects[key].delete()
            self._record(kind, "DELETED", patched)
        else:
            self.objects[key].history.append(patched)
            self._record(kind, "MODIFIED", patched)
        return patched

    def _delete(self, kind: _Kind, request: rendering.Request) -> dict[str, Any]:
        current = self._current(kind, request)
        key = self._key(kind, request.namespace, str(request.name))
        meta = current["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                meta["deletionGracePeriodSeconds"] = 0
                meta["generation"] = int(meta.get("generation", 1)) + 1
                self._bump(current)
                self.objects[key].history.append(current)
                self._record(kind, "MODIFIED", current)
            return current
        self._bump(current)
        self.objects[key].delete()
        self._record(kind, "DELETED", current)
        return current

    def _matching(self, request: rendering.Request, resource: Any, obj: dict[str, Any]) -> bool:
        if resource != request.resource:
            return False
        meta = obj.get("metadata", {})
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        if request.name is not None and meta.get("name") != request.name:
            return False
        return _selector_matches(request.params.get("labelSelector"), meta.get("labels") or {})

    def _alive(self, request: rendering.Request) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj.raw)
            for (resource, _, _), obj in self.objects.items()
            if not obj.deleted and self._matching(request, resource, obj.raw)
        ]

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        kind = self._kinds.get(request.resource) if request.resource is not None else None
        if kind is None:
            raise kmock.KubernetesResourceNotFoundError()
        async with self._lock:
            items = self._alive(request)
            version = str(self._rv)
        metadata: dict[str, Any] = {"resourceVersion": version}

        # Pages in a stable order; the token is the offset of the next page (a real server's
        # is opaque, and clients pass it back as they got it).
        if request.params.get("limit"):
            items.sort(
                key=lambda obj: (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
            )
            start = int(request.params.get("continue") or 0)
            end = start + int(request.params["limit"])
            if end < len(items):
                metadata["continue"] = str(end)
            items = items[start:end]
        return {
            "apiVersion": _api_version(kind.resource),
            "kind": f"{kind.kind}List",
            "metadata": metadata,
            "items": items,
        }

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        if request.resource not in self._kinds:
            raise kmock.KubernetesResourceNotFoundError()
        async with self._lock:
            return self._current(self._kinds[request.resource], request)

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        if request.resource not in self._kinds:
            raise kmock.KubernetesResourceNotFoundError()
        yield b""  # send the headers now, as a real server does, even if nothing happens

        loop = asyncio.get_running_loop()
        timeouts = (
            [float(request.params["timeoutSeconds"])] if "timeoutSeconds" in request.params else []
        )
        if self.watch_timeout_s is not None:
            timeouts.append(self.watch_timeout_s)
        deadline = loop.time() + min(timeouts) if timeouts else None

        since = request.params.get("resourceVersion")
        async with self._lock:
            if since in (None, "", "0"):
                initial = [{"type": "ADDED", "object": obj} for obj in self._alive(request)]
                cursor = self._rv
            else:
                cursor = int(since)
                oldest = self._history[0].rv if self._history else self._rv
                if len(self._history) >= HISTORY_LIMIT and cursor < oldest - 1:
                    initial = [
                        {
                            "type": "ERROR",
                            "object": {
                                "kind": "Status",
                                "apiVersion": "v1",
                                "status": "Failure",
                                "code": 410,
                                "reason": "Expired",
                                "message": f"too old resource version: {cursor} ({oldest})",
                            },
                        }
                    ]
                    cursor = -1
                else:
                    initial = []
        for event in initial:
            yield event
        if cursor < 0:
            return

        while True:
            changed = self._changed
            fresh = [event for event in self._history if event.rv > cursor]
            for event in fresh:
                cursor = event.rv
                if self._matching(request, event.resource, event.obj):
                    yield {"type": event.type, "object": copy.deepcopy(event.obj)}
            if fresh:
                continue
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(changed.wait(), timeout=remaining)
            except TimeoutError:
                return


def kubeconfig(server_url: str) -> str:
    """A kubeconfig pointing at the emulator, for kubernetes_asyncio, kopf and kubectl."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": server_url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "tester", "namespace": "default"},
                }
            ],
            "current-context": "emulator",
        }
    )
