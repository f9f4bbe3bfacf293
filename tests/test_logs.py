"""Log records about a task carry its id, in text and in JSON lines."""

from __future__ import annotations

import json
import logging

import pytest

from agent_growth import logs


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(capsys: pytest.CaptureFixture[str], *, log_format: str, task_id: str | None) -> str:
    logs.configure(log_format=log_format, level="INFO")
    token = logs.current_task_id.set(task_id)
    try:
        logging.getLogger("agent_growth.test").info("progress %d", 25)
    finally:
        logs.current_task_id.reset(token)
    return capsys.readouterr().err.strip()


def test_json_lines_carry_the_task_id(capsys, restore_logging) -> None:
    record = json.loads(emit(capsys, log_format="json", task_id="agent-coverage-1"))

    assert record["message"] == "progress 25"
    assert record["task_id"] == "agent-coverage-1"
    assert record["level"] == "INFO"


def test_json_lines_outside_a_task_have_no_task_id(capsys, restore_logging) -> None:
    record = json.loads(emit(capsys, log_format="json", task_id=None))

    assert "task_id" not in record


def test_text_lines_name_the_task_before_the_message(capsys, restore_logging) -> None:
    line = emit(capsys, log_format="text", task_id="agent-coverage-1")

    assert line.endswith("agent_growth.test [agent-coverage-1] progress 25")


def test_text_lines_of_the_operator_name_the_resource_and_its_task(capsys, restore_logging) -> None:
    logs.configure(log_format="text", level="INFO")
    with logs.about(task_id="agent-coverage-1", resource="team-a/nightly"):
        logging.getLogger("agent_growth.test").info("queued")
    line = capsys.readouterr().err.strip()

    assert line.endswith("agent_growth.test [team-a/nightly task=agent-coverage-1] queued")
    assert logs.current_resource.get() is None
    assert logs.current_task_id.get() is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_one_warning_then_reminders_then_one_line_when_it_ends(caplog) -> None:
    clock = FakeClock()
    outage = logs.Outage(logging.getLogger("agent_growth.test"), "taking work", clock=clock)
    caplog.set_level(logging.INFO, logger="agent_growth.test")

    for _ in range(30):  # one try a second for half a minute
        outage.failed("connection refused")
        clock.now += 1.0
    assert [r.getMessage() for r in caplog.records] == [
        "taking work failed: connection refused; retrying"
    ]

    clock.now += 30.0
    outage.failed("connection refused")
    clock.now += 5.0
    outage.recovered()
    outage.recovered()

    messages = [r.getMessage() for r in caplog.records]
    assert messages[1:] == [
        "taking work still failing after 60 s (31 tries): connection refused",
        "taking work works again after 65.0 s and 31 failed tries",
    ]
    assert not outage.ongoing


def test_the_wait_between_tries_doubles_up_to_its_cap_and_starts_over_after_recovery() -> None:
    outage = logs.Outage(
        logging.getLogger("agent_growth.test"), "claiming", first_wait_s=0.5, max_wait_s=3.0
    )

    waits = [outage.failed("down") for _ in range(5)]
    outage.recovered()

    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert outage.failed("down again") == 0.5
