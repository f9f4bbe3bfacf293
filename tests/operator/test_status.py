"""The status helpers' rules that the operator's write budget rests on."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from agent_growth.operator import status as status_

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _fields(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "task_id": "agent-coverage-x",
        "status": "running",
        "progress_percentage": 40,
        "attempts": 1,
        "started_at": T0,
        "estimated_completion_at": T0 + dt.timedelta(seconds=60),
    }
    fields.update(changes)
    return fields


def test_rebuilding_an_unchanged_task_later_gives_the_same_stanza():
    first = status_.build_status(_fields(), generation=1, now=T0)
    later = status_.build_status(
        _fields(), generation=1, previous=first, now=T0 + dt.timedelta(minutes=5)
    )
    assert later == first


def test_an_eta_that_moved_a_little_is_not_news_but_one_that_moved_a_lot_is():
    first = status_.build_status(_fields(), generation=1, now=T0)
    nudged = status_.build_status(
        _fields(estimated_completion_at=T0 + dt.timedelta(seconds=63)), generation=1, previous=first
    )
    moved = status_.build_status(
        _fields(estimated_completion_at=T0 + dt.timedelta(seconds=90)), generation=1, previous=first
    )
    assert status_.settle(first, nudged) == first
    assert status_.settle(first, moved) != first


def test_a_merge_patch_removes_fields_the_new_status_no_longer_has():
    pending = status_.build_status(
        _fields(status="pending", queue_position=3, started_at=None), generation=1
    )
    running = status_.build_status(_fields(), generation=1, previous=pending)
    patch = status_.merge_patch(pending, running)
    assert patch["queuePosition"] is None
    assert patch["phase"] == "Running"


def test_a_task_that_started_and_ended_between_two_reads_still_gets_both_events():
    pending = status_.build_status(
        _fields(status="pending", queue_position=1, started_at=None), generation=1
    )
    done = status_.build_status(
        _fields(status="completed", progress_percentage=100, completed_at=T0), generation=1
    )
    reasons = [reason for _, reason, _ in status_.transition_events(pending, done)]
    assert reasons == ["Started", "Completed"]
    assert status_.transition_events(done, done) == []


def test_the_operator_imports_neither_the_api_nor_the_worker():
    probe = (
        "import sys, agent_growth.operator.main, agent_growth.operator.handlers;"
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('agent_growth.api', 'agent_growth.worker'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _waiting(position: int, **changes: object) -> dict[str, object]:
    fields = _fields(status="pending", progress_percentage=0, attempts=0, started_at=None)
    fields.update(queue_position=position, estimated_completion_at=None, **changes)
    return fields


def test_a_waiting_task_moving_up_is_only_a_queue_step_but_an_error_or_a_start_is_news():
    at_12 = status_.build_status(_waiting(12), generation=1, now=T0)
    at_11 = status_.build_status(_waiting(11), generation=1, previous=at_12)
    lost = status_.build_status(
        _waiting(11, error="lost its worker (attempt 1 of 3)"),
        generation=1,
        previous=at_12,
    )
    started = status_.build_status(_fields(), generation=1, previous=at_12)

    assert status_.only_the_queue_moved(at_12, at_11)
    assert not status_.only_the_queue_moved(at_12, lost)
    assert not status_.only_the_queue_moved(at_12, started)
    assert not status_.only_the_queue_moved(None, at_12)
