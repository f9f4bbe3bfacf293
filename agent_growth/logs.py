"""Logging set-up for the entrypoints, and the task id that every task's records carry.

Modules only call `logging.getLogger(__name__)`; `configure()` is called once, by the command
that starts a process. The task being worked on (and, in the operator, the CoverageRefresh
resource behind it) lives in context variables, which asyncio copies into each task, so a
filter can stamp them on every record without threading them through every call.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Callable, Iterator

from pythonjsonlogger.json import JsonFormatter

current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_task_id", default=None
)
# `namespace/name` of the CoverageRefresh an operator handler is working on.
current_resource: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_resource", default=None
)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


@contextlib.contextmanager
def about(*, task_id: str, resource: str | None = None) -> Iterator[None]:
    """Every record made inside carries `task_id` (and `resource`, when given)."""
    task_token = current_task_id.set(task_id)
    resource_token = current_resource.set(resource)
    try:
        yield
    finally:
        current_resource.reset(resource_token)
        current_task_id.reset(task_token)


class TaskIdFilter(logging.Filter):
    """Stamps `task_id` (and `resource`) on records made while a task is being worked on."""

    def filter(self, record: logging.LogRecord) -> bool:
        task_id = getattr(record, "task_id", None) or current_task_id.get()
        if task_id:
            record.task_id = task_id
        resource = getattr(record, "resource", None) or current_resource.get()
        if resource:
            record.resource = resource
        return True


class TextFormatter(logging.Formatter):
    """Plain lines, naming the resource and task in brackets before the message when known."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        task_id = getattr(record, "task_id", None)
        resource = getattr(record, "resource", None)
        if resource and resource not in record.message:
            tag = f"[{resource} task={task_id}]" if task_id else f"[{resource}]"
        elif task_id and task_id not in record.message:
            tag = f"[{task_id}]"
        else:
            return line
        return line.replace(record.message, f"{tag} {record.message}", 1)


def configure(*, log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TaskIdFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "time"})
        )
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request access lines come from our own middleware; uvicorn's would double them.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO on every run.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx logs every request at INFO; for webhooks and the demo's client that is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class Outage:
    """How a loop reports a dependency that keeps failing, and how long it waits between tries.

    The first failure is a warning; while the failures go on, one reminder a minute; the first
    success after them is one line saying how long it lasted. The wait between tries doubles
    from `first_wait_s` up to `max_wait_s`, so a long outage neither floods the logs nor hammers
    the server, and a blip costs well under a second.
    """

    def __init__(
        self,
        logger: logging.Logger,
        doing: str,
        *,
        first_wait_s: float = 0.5,
        max_wait_s: float = 5.0,
        remind_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._doing = doing
        self._first_wait_s = first_wait_s
        self._max_wait_s = max_wait_s
        self._remind_every_s = remind_every_s
        self._clock = clock
        self._failures = 0
        self._began_at = 0.0
        self._reminded_at = 0.0

    @property
    def ongoing(self) -> bool:
        return self._failures > 0

    def failed(self, reason: str) -> float:
        """Records one failure and returns how many seconds to wait before the next try."""
        now = self._clock()
        if self._failures == 0:
            self._began_at = self._reminded_at = now
            self._logger.warning("%s failed: %s; retrying", self._doing, reason)
        elif now - self._reminded_at >= self._remind_every_s:
            self._reminded_at = now
            self._logger.warning(
                "%s still failing after %.0f s (%d tries): %s",
                self._doing,
                now - self._began_at,
                self._failures + 1,
                reason,
            )
        self._failures += 1
        return min(self._first_wait_s * 2 ** (self._failures - 1), self._max_wait_s)

    def recovered(self) -> None:
        if self._failures:
            self._logger.info(
                "%s works again after %.1f s and %d failed tries",
                self._doing,
                self._clock() - self._began_at,
                self._failures,
            )
            self._failures = 0
