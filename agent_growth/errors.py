"""The small error tree that the core raises and every door (API, worker, operator) translates.

Third-party errors (Redis, PostgreSQL, Kubernetes) are wrapped at the boundary where they occur,
with `raise ... from exc`, so callers handle one vocabulary.
"""

from __future__ import annotations


class AgentGrowthError(Exception):
    """Base of every error the core raises on purpose."""


class NotFound(AgentGrowthError):
    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident


class AgentNotFound(NotFound):
    def __init__(self, agent_id: object) -> None:
        super().__init__("agent", agent_id)


class TaskNotFound(NotFound):
    def __init__(self, task_id: object) -> None:
        super().__init__("task", task_id)


class InvalidInput(AgentGrowthError):
    """A value the caller sent is not allowed; `field` names it, the message says what is."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TaskAlreadyFinished(AgentGrowthError):
    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id} already finished with status {status!r}")
        self.task_id = task_id
        self.status = status


class QueueUnavailable(AgentGrowthError):
    """Redis cannot be reached; the caller should retry later."""


class ClusterUnavailable(AgentGrowthError):
    """The Kubernetes API refused or could not be reached while creating a resource."""


def describe(exc: BaseException) -> str:
    """One line for a log record about a failure of PostgreSQL or Redis.

    SQLAlchemy's own text repeats the whole statement and its parameters; the driver's first
    line says what went wrong, and a missing table says what to do.
    """
    cause = getattr(exc, "orig", None) or exc
    if type(cause).__name__ == "UndefinedTable":
        return "the database has no schema; run `agent-growth migrate`"
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__
