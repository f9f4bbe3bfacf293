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

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(task_suffix)s%(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


class TaskIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        task_id = getattr(record, "task_id", None) or current_task_id.get()
        record.task_id = task_id
        record.task_suffix = f"[{task_id}] " if task_id else ""
        return True


def configure(*, log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TaskIdFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "time"})
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request access lines come from our own middleware; uvicorn's would double them.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO; for webhooks and the demo's client that is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
