"""Task types. Importing this package registers every built-in type with the registry."""

from overlord.tasks import compact, index, kill, legacy, noop, parallel, query_controller, query_worker  # noqa: F401
