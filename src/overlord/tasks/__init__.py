"""Task types. Importing this package names each built-in type's module; a module is imported (and
registers its type) when the type is first looked up, so a process imports only the task code it uses."""

from overlord.core.task import register_modules

_PACKAGE = __name__

register_modules(
    {
        "noop": f"{_PACKAGE}.noop",
        "kill": f"{_PACKAGE}.kill",
        "compact": f"{_PACKAGE}.compact",
        "merge": f"{_PACKAGE}.legacy",
        "append": f"{_PACKAGE}.legacy",
        "same_interval_merge": f"{_PACKAGE}.legacy",
        "index": f"{_PACKAGE}.index",
        "single_phase_sub_task": f"{_PACKAGE}.index",
        "index_parallel": f"{_PACKAGE}.parallel",
        "query_controller": f"{_PACKAGE}.query_controller",
        "query_worker": f"{_PACKAGE}.query_worker",
    }
)


def import_all() -> None:
    """Import every built-in type's module (the fork server preloads them for peons)."""
    from overlord.core.task import registered_types

    registered_types()
