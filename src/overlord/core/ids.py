"""The rules for names that become keys and file names: task ids, group ids, data sources.

Druid's ``IdUtils.validateId``, in one place: ids become directory and file names (task
directories, logs, deep-storage paths, staging areas), so a name that could climb out of its
directory (``/``, ``.``, ``..``), hide (leading ``.``), or that a store or file system refuses (NUL,
control characters, more than 255 bytes) is answered with a 400 naming the field before anything
is stored or written.
"""

from __future__ import annotations

import re

from overlord.errors import InvalidInput, InvalidSpec

MAX_ID_BYTES = 255  # the id columns (storage/metadata.py) and a file name on every common file system


# What Druid refuses in an id: whitespace other than space, and IdUtils's UTF-8 ranges (C0 and C1
# controls, surrogates and private use, the U+FFF0..U+FFFF specials); DEL too.
_ILLEGAL = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\uffff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_id(value: object, field_name: str = "id") -> str:
    """Druid's IdUtils rules; raises InvalidSpec (400) naming ``field_name``, returns the id."""

    def refuse(why: str) -> InvalidSpec:
        shown = value if isinstance(value, str) and len(value) <= 300 else "..."
        return InvalidSpec(f"Invalid value for field [{field_name}]: [{shown!s}] {why}", field=field_name)

    if not isinstance(value, str) or not value:
        raise InvalidSpec(f"Invalid value for field [{field_name}]: must be a non-empty string", field=field_name)
    if value.startswith("."):  # also refuses "." and ".."
        raise refuse("cannot start with '.'")
    if "/" in value:
        raise refuse("cannot contain '/'")
    bad = _ILLEGAL.search(value)
    if bad is not None:
        pos, ch = bad.start(), bad.group()
        raise InvalidSpec(
            f"Invalid value for field [{field_name}]: contains illegal character U+{ord(ch):04X} at position [{pos}]"
            " (whitespace other than space and control characters are not allowed)",
            field=field_name,
        )
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise InvalidSpec(
            f"Invalid value for field [{field_name}]: longer than {MAX_ID_BYTES} bytes in UTF-8", field=field_name
        )
    return value


def check_lookup_id(value: str, name: str) -> str:
    """An id used only to look something up (a path or query parameter, a ``/taskStatus`` entry).

    Lookups stay lenient (an id that cannot exist is simply not found), except for control
    characters: PostgreSQL refuses a NUL outright, and no stored id can contain one.
    """
    bad = _CONTROL.search(value)
    if bad is not None:
        raise InvalidInput(
            f"Invalid value for parameter [{name}]: contains control character U+{ord(bad.group()):04X} "
            f"at position [{bad.start()}]",
            field=name,
        )
    return value
