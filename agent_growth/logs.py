"""Logging set-up for the entrypoints, and the task id that every task's records carry.

Modules only call `logging.getLogger(__name__)`; `configure()` is called once, by the command
that starts a process. The task being worked on lives in a context variable, which asyncio
copies into each task, so a filter can stamp it on every record without threading it through
every call.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_task_id", default=None
)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


class TaskIdFilter(logging.Filter):
    """Stamps `task_id` on records made while a task is being worked on."""

    def filter(self, record: logging.LogRecord) -> bool:
        task_id = getattr(record, "task_id", None) or current_task_id.get()
        if task_id:
            record.task_id = task_id
        return True


class TextFormatter(logging.Formatter):
    """Plain lines, with the task id in brackets before the message when there is one."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        task_id = getattr(record, "task_id", None)
        if task_id and task_id not in record.message:
            line = line.replace(record.message, f"[{task_id}] {record.message}", 1)
        return line


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
