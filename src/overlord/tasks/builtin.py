"""Importing this module registers every built-in task type with the registry (the service, the
client's spec validation and the heavy fork server import it)."""

from overlord.tasks import compact, index, kill, legacy, noop, parallel, query_controller, query_worker  # noqa: F401
