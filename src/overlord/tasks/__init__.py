"""Task types, one module per type, and the action client a task uses.

Importing the package registers nothing, so a peon that imports one light task module (and the action
client) does not pull in every type's dependencies (pyarrow, DuckDB): ``overlord.tasks.builtin``
registers them all.
"""
