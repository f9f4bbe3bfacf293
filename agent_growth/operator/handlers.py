"""The kopf handlers that turn CoverageRefresh resources into tasks and tasks into status.

- create / resume: make sure the task row exists (the API made it already for its own
  resources), queue it through `lifecycle.enqueue` (or, for a resource created with
  `spec.cancel: true`, cancel it through `lifecycle.cancel` at once), label the resource with
  the task id, and write the first status. Doing it again is harmless, which is what a restart
  does.
- a daemon per resource mirrors the task into the status until it ends, then deletes the
  resource once `ttlSecondsAfterFinished` has passed. A task row that disappears (deleting an
  agent deletes its tasks) ends the resource as Failed.
- `spec.cancel: true`, a deletion (the finalizer) and the REST API all cancel through
  `lifecycle.cancel`. A deletion waits for a running task to stop, but only so long.

Every handler counts an unexpected failure as `outcome="error"` in the reconcile metric and
lets it through to kopf, which logs it and retries. Handlers are registered on a registry made
per operator (`build_registry`), and share a `Runtime` through kopf's memo, so two operators can
run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from sqlalchemy.exc import SQLAlchemyError

from agent_growth import kube, logs, metrics
from agent_growth.db.models import BackgroundTask
from agent_growth.errors import AgentNotFound, InvalidInput, QueueUnavailable
from agent_growth.operator import drift, peering
from agent_growth.operator import status as status_
from agent_growth.operator.mirror import ResourceKey
from agent_growth.operator.runtime import Runtime
from agent_growth.tasks import lifecycle
from agent_growth.webhooks import guard

logger = logging.getLogger(__name__)

RESOURCE = (kube.GROUP, kube.VERSION, kube.PLURAL)

# A database or queue outage is retried by kopf after this long, not in a tight loop.
RETRY_DELAY_S = 5.0

# kopf cancels a mirror this long after asking it to stop (deletion, pause, shutdown).
MIRROR_CANCELLATION_TIMEOUT_S = 1.0

Handler = Callable[..., Awaitable[None]]


def _instrumented(handler: Handler) -> Handler:
    """`handler`, counting its unexpected failures as reconcile errors before kopf sees them.

    Every record made while it runs, in the core too, names the resource and its task.
    A `kopf.TemporaryError` is a planned retry (an outage), counted as `retry` where raised.
    The failure is not logged here: kopf logs it, once.
    """

    @functools.wraps(handler)
    async def counted(**kwargs: Any) -> None:
        body = kwargs["body"]
        namespace, name = _key(body)
        with logs.about(task_id=kube.task_id_of(body), resource=f"{namespace}/{name}"):
            try:
                await handler(**kwargs)
            except kopf.TemporaryError:
                raise
            except Exception:
                metrics.OPERATOR_RECONCILES.labels(outcome="error").inc()
                raise

    return counted


class _Rejected(Exception):
    """A resource that can never become a task, with the reason and message to show on it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _key(body: kopf.Body) -> ResourceKey:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _event(body: kopf.Body, *, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)
    metrics.OPERATOR_API_WRITES.labels(kind="event").inc()


async def mirror_once(
    runtime: Runtime,
    body: kopf.Body,
    *,
    task_id: str,
    prefetched: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Write the task's current state into the status if it changed; the stanza now known.

    `prefetched` are a pending task's fields read by the hub's batched refresh; they are used
    only while the resource still shows Pending, so they can never undo a later phase.
    """
    key = _key(body)
    generation = body["metadata"].get("generation")

    async def build(previous: dict[str, Any] | None) -> dict[str, Any] | None:
        fields = prefetched if (previous or {}).get("phase") == "Pending" else None
        if fields is None:
            fields = await runtime.task_fields(task_id)
        if fields is not None:
            return status_.build_status(fields, generation=generation, previous=previous)

        # The row of a task we saw is gone: nothing will ever change it again. Before the create
        # handler made the row (the daemon starts beside it), there is simply nothing yet.
        if status_.was_accepted(previous):
            return status_.task_deleted_status(previous, generation=generation)
        return None

    try:
        previous, written = await runtime.writer.sync(key, build)
    except ApiException as exc:
        if exc.status == 404:
            logger.info("resource is gone; nothing left to mirror")
            return {"phase": "Gone"}
        # Handled by retrying, but counted: a status kept refused (RBAC, an old CRD) is an error.
        logger.warning("status write refused, retrying later: %s %s", exc.status, exc.reason)
        metrics.OPERATOR_RECONCILES.labels(outcome="error").inc()
        return runtime.writer.last(key)
    except (SQLAlchemyError, *kube.TRANSPORT_ERRORS) as exc:
        logger.warning("task state unavailable, retrying later: %r", exc)
        return runtime.writer.last(key)

    if written is None:
        return previous
    logger.debug("status written: %s, %s%%", written["phase"], written["progress"])
    for type_, reason, message in status_.transition_events(previous, written):
        logger.info("%s: %s", reason, message)
        _event(body, type_=type_, reason=reason, message=message)
    return written


async def _reject(runtime: Runtime, body: kopf.Body, *, rejection: _Rejected) -> None:
    """Give up on a resource that cannot become a task: phase Failed, and no retries."""

    async def build(previous: dict[str, Any] | None) -> dict[str, Any]:
        return status_.rejected_status(
            task_id=None,
            reason=rejection.reason,
            message=rejection.message,
            generation=body["metadata"].get("generation"),
            previous=previous,
        )

    await runtime.writer.sync(_key(body), build)
    logger.warning("rejected: %s", rejection.message)
    _event(body, type_="Warning", reason="Failed", message=rejection.message)
    metrics.OPERATOR_RECONCILES.labels(outcome="rejected").inc()


def _validated_agent_id(spec: dict[str, Any]) -> uuid.UUID:
    """The spec's agent id, once the spec is known to be able to become a task."""
    try:
        agent_id = uuid.UUID(str(spec.get("agentId")))
    except ValueError:
        message = f"spec.agentId must be an agent's UUID, got {spec.get('agentId')!r}"
        raise _Rejected("InvalidSpec", message) from None

    # The CRD only checks the scheme; the API refuses these same URLs with a 422.
    if spec.get("webhookUrl"):
        try:
            guard.check_webhook_url(str(spec["webhookUrl"]))
        except InvalidInput as exc:
            raise _Rejected("InvalidSpec", f"spec.webhookUrl: {exc.message}") from exc
    return agent_id


async def _ensure_row(
    runtime: Runtime, body: kopf.Body, *, task_id: str, agent_id: uuid.UUID
) -> tuple[BackgroundTask, bool]:
    """The resource's task row, made if missing: (the row, whether it is new)."""
    spec = body.get("spec") or {}
    try:
        async with runtime.session() as session:
            task, new_row = await lifecycle.ensure_task(
                session,
                task_id=task_id,
                agent_id=agent_id,
                priority=str(spec.get("priority", "medium")),
                timeout_seconds=int(spec.get("activeDeadlineSeconds", 300)),
                webhook_url=spec.get("webhookUrl"),
                resource_namespace=body["metadata"]["namespace"],
            )
    except AgentNotFound:
        message = f"agent {agent_id} not found; set spec.agentId to the id of an existing agent"
        raise _Rejected("AgentNotFound", message) from None
    except SQLAlchemyError as exc:
        metrics.OPERATOR_RECONCILES.labels(outcome="retry").inc()
        raise kopf.TemporaryError(f"database unavailable: {exc}", delay=RETRY_DELAY_S) from exc

    if task.agent_id != agent_id:
        message = (
            f"task {task_id} already belongs to agent {task.agent_id}; "
            "give this resource another name"
        )
        raise _Rejected("TaskConflict", message)
    return task, new_row


async def _queue_or_cancel(runtime: Runtime, task: BackgroundTask, *, cancel: bool) -> None:
    """Queue a pending task; or, for a resource created cancelled, cancel it at once.

    A cancelled resource's row must not stay pending: workers queue pending rows that nobody
    queued once they are old enough, and the cancel handler may be retried until then.
    """
    if task.status != "pending":
        return
    try:
        if cancel:
            await runtime.cancel(task.task_id)
        else:
            await lifecycle.enqueue(runtime.redis, task)
            runtime.hub.queue_changed()
    except SQLAlchemyError as exc:
        metrics.OPERATOR_RECONCILES.labels(outcome="retry").inc()
        raise kopf.TemporaryError(f"database unavailable: {exc}", delay=RETRY_DELAY_S) from exc
    except QueueUnavailable as exc:
        metrics.OPERATOR_RECONCILES.labels(outcome="retry").inc()
        raise kopf.TemporaryError(f"queue unavailable: {exc}", delay=RETRY_DELAY_S) from exc


async def accept(*, body: kopf.Body, patch: kopf.Patch, memo: Any, created: bool, **_: Any) -> None:
    """Make the resource's task exist and queue it; safe to repeat."""
    runtime: Runtime = memo.runtime
    spec = body.get("spec") or {}
    task_id = kube.task_id_of(body)
    runtime.writer.seed(_key(body), body.get("status"))
    if status_.is_terminal(body.get("status")):
        logger.debug("already finished; nothing to queue")
        return

    try:
        agent_id = _validated_agent_id(spec)
        task, new_row = await _ensure_row(runtime, body, task_id=task_id, agent_id=agent_id)
    except _Rejected as rejection:
        await _reject(runtime, body, rejection=rejection)
        return

    cancel = bool(spec.get("cancel"))
    queued = task.status == "pending" and not cancel
    await _queue_or_cancel(runtime, task, cancel=cancel)
    # Before the first mirror: a worker may take the task at once, and its Started event must
    # not come before this one.
    if created and queued:
        logger.info("queued (%s priority, row %s)", task.priority, "new" if new_row else "existing")
        _event(body, type_="Normal", reason="Queued", message=f"task {task_id} queued")

    labels = body["metadata"].get("labels") or {}
    if labels.get(kube.TASK_ID_LABEL) != task_id:
        patch.metadata.labels[kube.TASK_ID_LABEL] = task_id

    await mirror_once(runtime, body, task_id=task_id)
    runtime.hub.wake(task_id)
    metrics.OPERATOR_RECONCILES.labels(outcome="queued" if created else "resumed").inc()


async def mirror(*, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Keep the status in step with the task until it ends; then delete after the TTL."""
    runtime: Runtime = memo.runtime
    task_id = kube.task_id_of(body)
    runtime.writer.seed(_key(body), body.get("status"))
    waker = runtime.hub.register(task_id)
    poll_s = runtime.settings.operator_poll_interval_s
    try:
        while True:
            waker.clear()
            prefetched = runtime.hub.take(task_id)
            current = await mirror_once(runtime, body, task_id=task_id, prefetched=prefetched)
            current = current or dict(body.get("status") or {})
            if current.get("phase") == "Gone":
                return
            if status_.is_terminal(current):
                break
            runtime.hub.mark_pending(task_id, current.get("phase") == "Pending")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=poll_s)
    finally:
        runtime.hub.unregister(task_id)

    await _delete_after_ttl(runtime, body, current=current)


async def _delete_after_ttl(runtime: Runtime, body: kopf.Body, *, current: dict[str, Any]) -> None:
    ttl_s = int((body.get("spec") or {}).get("ttlSecondsAfterFinished", 86400))
    now = dt.datetime.now(dt.UTC)
    completion = current.get("completionTime")
    finished_at = now
    if completion:
        finished_at = dt.datetime.fromisoformat(completion.replace("Z", "+00:00"))
    delay_s = max(0.0, (finished_at + dt.timedelta(seconds=ttl_s) - now).total_seconds())
    logger.info("%s; the resource is deleted in %.0f s", current.get("phase"), delay_s)
    await asyncio.sleep(delay_s)

    namespace, name = _key(body)
    try:
        await client.CustomObjectsApi(runtime.api).delete_namespaced_custom_object(
            kube.GROUP,
            kube.VERSION,
            namespace,
            kube.PLURAL,
            name,
            _request_timeout=kube.REQUEST_TIMEOUT_S,
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        return
    metrics.OPERATOR_API_WRITES.labels(kind="delete").inc()
    logger.info("deleted %.0f s after it finished; its task row and history stay", ttl_s)


async def cancel_requested(*, old: Any, new: Any, body: kopf.Body, memo: Any, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    task_id = kube.task_id_of(body)
    if not new:
        if old:
            logger.warning("spec.cancel went back to false; a cancellation cannot be undone")
        return

    state, changed = await runtime.cancel(task_id)
    if state is None:
        logger.info("cancel requested before any task existed; nothing to stop")
        return
    logger.info("cancel requested; the task is now %s", state if changed else f"already {state}")
    metrics.OPERATOR_RECONCILES.labels(outcome="cancelled").inc()
    runtime.hub.wake(task_id)
    await mirror_once(runtime, body, task_id=task_id)


async def spec_changed(*, diff: kopf.Diff, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Changes other than `cancel` cannot reach a queued task; say so rather than pretend."""
    runtime: Runtime = memo.runtime
    task_id = kube.task_id_of(body)
    changed = {"spec." + ".".join(path) for _, path, _, _ in diff if path}
    ignored = sorted(changed - {"spec.cancel"})
    if ignored:
        message = (
            f"{', '.join(ignored)} changed after the task was created and is ignored; "
            "delete the resource and create a new one to change it"
        )
        logger.warning("%s", message)
        _event(body, type_="Warning", reason="SpecIgnored", message=message)
    runtime.hub.wake(task_id)


async def finalize(*, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Cancel the task of a resource being deleted, waiting a little for a running one."""
    runtime: Runtime = memo.runtime
    task_id = kube.task_id_of(body)
    wait_s = runtime.settings.operator_cancel_wait_s
    state, changed = await runtime.cancel_and_wait(task_id, wait_s=wait_s)
    if changed or state == "running":
        await mirror_once(runtime, body, task_id=task_id)
    if state == "running":
        logger.warning("still running %.0f s after cancelling; letting the resource go", wait_s)
    elif changed:
        logger.info("deleted; its task is %s", state)
    if changed:
        metrics.OPERATOR_RECONCILES.labels(outcome="deleted").inc()
    runtime.writer.forget(_key(body))


def build_registry(*, namespaces: tuple[str, ...] = ()) -> kopf.OperatorRegistry:
    """A registry with every handler of the operator; `namespaces` empty means cluster-wide."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        runtime = await Runtime.start(namespaces=namespaces)
        memo.runtime = runtime
        own = runtime.settings
        runtime.every(
            "deadline backstop",
            interval_s=own.operator_backstop_interval_s,
            step=lambda: drift.expire_overdue(runtime),
        )
        runtime.every(
            "drift",
            interval_s=own.operator_drift_interval_s,
            step=lambda: drift.reconcile_drift(runtime),
        )
        if not settings.peering.standalone:
            await peering.ensure_peering_object(
                runtime.api, name=settings.peering.name, namespaces=namespaces
            )

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as `kube.api_client`: the pod's account, else the kubeconfig.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: Any, **_: Any) -> None:
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is not None:
            await runtime.close()

    async def on_create(**kwargs: Any) -> None:
        await accept(created=True, **kwargs)

    async def on_resume(**kwargs: Any) -> None:
        await accept(created=False, **kwargs)

    kopf.on.create(*RESOURCE, registry=registry, id="accept")(_instrumented(on_create))
    kopf.on.resume(*RESOURCE, registry=registry, id="resume")(_instrumented(on_resume))
    kopf.on.field(*RESOURCE, field="spec.cancel", registry=registry, id="cancel")(
        _instrumented(cancel_requested)
    )
    kopf.on.update(*RESOURCE, field="spec", registry=registry, id="spec")(
        _instrumented(spec_changed)
    )
    kopf.on.delete(*RESOURCE, registry=registry, id="finalize")(_instrumented(finalize))
    kopf.daemon(
        *RESOURCE,
        registry=registry,
        id="mirror",
        cancellation_timeout=MIRROR_CANCELLATION_TIMEOUT_S,
    )(_instrumented(mirror))
    return registry
