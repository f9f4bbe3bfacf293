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
