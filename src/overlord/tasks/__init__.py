"""Task types. Importing this package registers every built-in type with the registry."""

from overlord.tasks import noop  # noqa: F401
