"""Task types are imported on first use: the service validates a noop without the ingestion code.

Each check runs in a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

INGESTION_MODULES = ["overlord.tasks.compact", "overlord.tasks.parallel", "overlord.tasks.index", "overlord.client"]
SQL_INGESTION_MODULES = ["overlord.sql.extern_query", "overlord.tasks.query_controller", "sqlglot"]


def _modules_after(code: str) -> dict[str, object]:
    probe = f"import json, sys\n{code}\nprint(json.dumps({{'loaded': sorted(sys.modules), 'out': out}}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.splitlines()[-1]))


def test_the_service_imports_no_ingestion_code_until_an_ingestion_type_is_used():
    got = _modules_after(
        "import overlord.service, overlord.api.app\n"
        "from overlord.core.task import task_type_for\n"
        "out = task_type_for('noop').name"
    )
    assert got["out"] == "noop"
    loaded = set(got["loaded"])  # type: ignore[arg-type]
    unwanted = loaded & {*INGESTION_MODULES, *SQL_INGESTION_MODULES}
    assert not unwanted, sorted(unwanted)


def test_a_type_is_imported_on_first_lookup_and_the_refusal_lists_every_type():
    got = _modules_after(
        "import overlord.tasks\n"
        "from overlord.core.task import needs_import, task_type_for\n"
        "from overlord.errors import UnsupportedTaskType\n"
        "before = needs_import('compact')\n"
        "name = task_type_for('compact').name\n"
        "try:\n"
        "    task_type_for('bogus')\n"
        "except UnsupportedTaskType as exc:\n"
        "    message = exc.message\n"
        "out = [before, needs_import('compact'), name, message]"
    )
    before, after, name, message = got["out"]  # type: ignore[misc]
    assert (before, after, name) == (True, False, "compact")
    assert "overlord.tasks.compact" in got["loaded"]  # type: ignore[operator]
    for type_name in ("index_parallel", "index", "query_controller", "kill", "noop", "merge", "compact"):
        assert type_name in message, type_name


def test_the_fork_servers_preload_imports_every_type():
    got = _modules_after("import overlord.tasks.builtin\nout = None")
    assert set(INGESTION_MODULES) <= set(got["loaded"])  # type: ignore[arg-type]
