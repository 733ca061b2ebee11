"""``overlord start`` with JSON logs: every line of the service's output is one JSON object."""

from __future__ import annotations

import json


def test_json_logs_carry_the_task_id_and_action(service_factory) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory(extra_env={"OVERLORD_LOG_FORMAT": "json"}).start()
    task_id = svc.submit({"type": "noop"})
    assert svc.wait_for(task_id)["statusCode"] == "SUCCESS"
    assert svc.stop() == 0
    entries = [json.loads(line) for line in svc.log_file.read_text().splitlines() if line.strip()]
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's lines too, not its own format
    actions = [e["action"] for e in entries if e.get("task_id") == task_id and "action" in e]
    assert "run" in actions, entries
