"""Log records written while a request acts on one task carry its id, as a worker's records do.

The id lives in `agent_growth.logs.current_task_id`, the context variable the log filter reads,
so the core's own records (a cancellation, a queue position that could not be read) carry it
without the route passing it along. Routes that act on one task call `log_as_task`. `TaskIdScope`
starts every request without an id and puts back the previous value when it ends: an id never
outlives its request, even where requests share one context, as in-process test clients run them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agent_growth import logs


def log_as_task(task_id: str) -> None:
    """Stamp every later record of this request with `task_id`."""
    logs.current_task_id.set(task_id)


class TaskIdScope:
    """ASGI middleware bounding the task id of `log_as_task` to one request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        token = logs.current_task_id.set(None)
        try:
            await self.app(scope, receive, send)
        finally:
            logs.current_task_id.reset(token)
