"""The status of a CoverageRefresh, built from what the core says about its task.

One pure function turns `tasks.status.task_status` fields into the `status` stanza, so the same
code feeds the API server and the CRD test that checks every field is declared in the schema
(undeclared fields would be pruned silently). Conditions follow the Kubernetes convention; a
condition keeps its `lastTransitionTime` while its status stays the same, so rebuilding an
unchanged task yields an identical stanza and costs no write.

ETAs move a little on every read (a pending task's is "now plus the work ahead"); differences
below `ETA_TOLERANCE_S` are not worth a write, so `settle` keeps the previous value then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeGuard

PHASES: Final = {
    "pending": "Pending",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "timeout": "TimedOut",
}
TERMINAL_PHASES: Final = frozenset({"Completed", "Failed", "Cancelled", "TimedOut"})

# Why a resource whose task row vanished ended; the API answers 404 for such a task.
TASK_DELETED_MESSAGE: Final = "task row deleted (its agent was deleted)"

# A shift of the estimated completion smaller than this is noise, not news.
ETA_TOLERANCE_S: Final = 10.0

CONDITION_TYPES: Final = ("Accepted", "Running", "Finished")

# The status fields this module writes; anything else in the stanza belongs to someone else.
OWN_FIELDS: Final = frozenset(
    {
        "taskId",
        "phase",
        "progress",
        "queuePosition",
        "estimatedCompletionTime",
        "startTime",
        "completionTime",
        "result",
        "message",
        "attempts",
        "observedGeneration",
        "conditions",
    }
)

_RESULT_FIELDS: Final = {
    "overall_coverage": ("overallCoverage", float),
    "total_documents": ("totalDocuments", int),
    "total_chunks": ("totalChunks", int),
}


def timestamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 in UTC with seconds, as Kubernetes writes its own times."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _result(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    result: dict[str, Any] = {}
    for source, (target, kind) in _RESULT_FIELDS.items():
        value = raw.get(source, raw.get(target))
        if isinstance(value, int | float) and not isinstance(value, bool):
            result[target] = kind(value)
    return result or None


def _message(phase: str, *, fields: Mapping[str, Any], result: Mapping[str, Any] | None) -> str:
    if fields.get("error"):
        return str(fields["error"])
    if phase == "Pending":
        position = fields.get("queue_position")
        return f"queued at position {position}" if position else "queued"
    if phase == "Running":
        return f"running, {fields.get('progress_percentage') or 0}% done"
    if phase == "Completed" and result and "overallCoverage" in result:
        return f"coverage {result['overallCoverage']:.2f}%"
    return phase.lower()


def _condition(
    kind: str,
    *,
    state: bool,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, Any] | None,
    now: dt.datetime,
) -> dict[str, Any]:
    status = "True" if state else "False"
    since = timestamp(now)
    for old in (previous or {}).get("conditions") or ():
        if old.get("type") == kind and old.get("status") == status:
            since = old.get("lastTransitionTime") or since
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


Condition = tuple[str, bool, str, str]
"""(type, state, reason, message) of one condition, in the order of `CONDITION_TYPES`."""


def _conditions(
    rows: Sequence[Condition],
    *,
    generation: int | None,
    previous: Mapping[str, Any] | None,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    return [
        _condition(
            kind,
            state=state,
            reason=reason,
            message=message,
            generation=generation,
            previous=previous,
            now=now,
        )
        for kind, state, reason, message in rows
    ]


def build_status(
    fields: Mapping[str, Any],
    *,
    generation: int | None,
    previous: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The status stanza for a task, given `task_status` fields and the stanza written before."""
    moment = now or dt.datetime.now(dt.UTC)
    phase = PHASES[fields["status"]]
    result = _result(fields.get("result"))
    message = _message(phase, fields=fields, result=result)

    status: dict[str, Any] = {
        "taskId": fields["task_id"],
        "phase": phase,
        "progress": int(fields.get("progress_percentage") or 0),
        "attempts": int(fields.get("attempts") or 0),
        "message": message,
    }
    optional = {
        "queuePosition": fields.get("queue_position") if phase == "Pending" else None,
        "estimatedCompletionTime": timestamp(fields.get("estimated_completion_at")),
        "startTime": timestamp(fields.get("started_at")),
        "completionTime": timestamp(fields.get("completed_at")),
        "result": result,
        "observedGeneration": generation,
    }
    status.update({key: value for key, value in optional.items() if value is not None})

    finished = phase in TERMINAL_PHASES
    running = phase == "Running"
    rows: list[Condition] = [
        ("Accepted", True, "Queued", f"task {fields['task_id']}"),
        ("Running", running, "Started" if running else phase, message if running else ""),
        ("Finished", finished, phase if finished else "InProgress", message),
    ]
    status["conditions"] = _conditions(rows, generation=generation, previous=previous, now=moment)
    return status


def rejected_status(
    *,
    task_id: str | None,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The status of a resource that never became a task (an unknown agent, say)."""
    moment = now or dt.datetime.now(dt.UTC)

    status: dict[str, Any] = {
        "phase": "Failed",
        "progress": 0,
        "attempts": 0,
        "message": message,
        "completionTime": (previous or {}).get("completionTime") or timestamp(moment),
        "conditions": _conditions(
            [
                ("Accepted", False, reason, message),
                ("Running", False, "Failed", ""),
                ("Finished", True, "Failed", message),
            ],
            generation=generation,
            previous=previous,
            now=moment,
        ),
    }
    if task_id:
        status["taskId"] = task_id
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def task_deleted_status(
    previous: Mapping[str, Any],
    *,
    generation: int | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The end of a resource whose task row is gone: deleting an agent deletes its tasks.

    Nothing will ever change the task again, so the resource ends Failed and its TTL runs;
    what the last stanza said about the task's start and progress is kept.
    """
    moment = now or dt.datetime.now(dt.UTC)
    task_id = previous.get("taskId")

    status: dict[str, Any] = {
        "phase": "Failed",
        "progress": int(previous.get("progress") or 0),
        "attempts": int(previous.get("attempts") or 0),
        "message": TASK_DELETED_MESSAGE,
        "completionTime": timestamp(moment),
        "conditions": _conditions(
            [
                ("Accepted", True, "Queued", f"task {task_id}"),
                ("Running", False, "Failed", ""),
                ("Finished", True, "TaskDeleted", TASK_DELETED_MESSAGE),
            ],
            generation=generation,
            previous=previous,
            now=moment,
        ),
    }
    optional = {"taskId": task_id, "startTime": previous.get("startTime")}
    status.update({key: value for key, value in optional.items() if value})
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def settle(previous: Mapping[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """`new`, with an ETA that moved less than the tolerance pinned to its previous value."""
    old_eta = (previous or {}).get("estimatedCompletionTime")
    new_eta = new.get("estimatedCompletionTime")
    if old_eta and new_eta and old_eta != new_eta:
        shift_s = abs((_parse_timestamp(new_eta) - _parse_timestamp(old_eta)).total_seconds())
        if shift_s < ETA_TOLERANCE_S:
            new = {**new, "estimatedCompletionTime": old_eta}
    return new


# What follows the queue while a resource waits; the rest of a Pending stanza stays put.
_QUEUE_FIELDS: Final = frozenset(
    {"queuePosition", "estimatedCompletionTime", "message", "conditions"}
)


def only_the_queue_moved(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether `new` differs from `previous` only in where a waiting task stands."""
    if not previous or previous.get("phase") != "Pending" or new.get("phase") != "Pending":
        return False
    # An error shown on a waiting task (an attempt lost) is news, not a queue step.
    if not all(str(s.get("message", "")).startswith("queued") for s in (previous, new)):
        return False
    kept = previous.keys() | new.keys()
    return all(previous.get(key) == new.get(key) for key in kept - _QUEUE_FIELDS)


def merge_patch(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning `previous` into `new`: dropped keys become null."""
    patch: dict[str, Any] = dict(new)
    for key in previous or {}:
        if key in OWN_FIELDS and key not in new:
            patch[key] = None
    return patch


def is_terminal(status: Mapping[str, Any] | None) -> bool:
    if not status:
        return False
    return status.get("phase") in TERMINAL_PHASES


def was_accepted(status: Mapping[str, Any] | None) -> TypeGuard[Mapping[str, Any]]:
    """Whether the stanza shows a task that was seen and has not ended (Pending or Running)."""
    if not status:
        return False
    return bool(status.get("taskId")) and not is_terminal(status)


# Event reason and type for each terminal phase.
_END_EVENTS: Final = {
    "Completed": "Normal",
    "Failed": "Warning",
    "Cancelled": "Normal",
    "TimedOut": "Warning",
}


def transition_events(
    previous: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """The Kubernetes events (type, reason, message) that the step from `previous` deserves.

    A task may start and end between two reads; it still gets its Started event, if it started.
    """
    old_phase = (previous or {}).get("phase")
    new_phase = new.get("phase")
    if new_phase == old_phase or old_phase in TERMINAL_PHASES:
        return []
    found: list[tuple[str, str, str]] = []
    if old_phase in (None, "Pending") and new.get("startTime"):
        attempts = new.get("attempts") or 1
        found.append(("Normal", "Started", f"task {new.get('taskId')} started, attempt {attempts}"))
    if new_phase in _END_EVENTS:
        found.append((_END_EVENTS[new_phase], str(new_phase), str(new.get("message") or "")))
    return found
