"""Column types as Druid names them: the SQL type, the native type and the JDBC type code.

Used for the ``typesHeader``/``sqlTypesHeader`` of results and INFORMATION_SCHEMA.COLUMNS.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class DruidType:
    sql: str
    native: str
    jdbc: int


TIMESTAMP = DruidType("TIMESTAMP", "LONG", 93)
BIGINT = DruidType("BIGINT", "LONG", -5)
INTEGER = DruidType("INTEGER", "LONG", 4)
DOUBLE = DruidType("DOUBLE", "DOUBLE", 8)
FLOAT = DruidType("FLOAT", "FLOAT", 6)
DECIMAL = DruidType("DECIMAL", "DOUBLE", 3)
VARCHAR = DruidType("VARCHAR", "STRING", 12)
BOOLEAN = DruidType("BOOLEAN", "LONG", 16)
DATE = DruidType("DATE", "LONG", 91)
OTHER = DruidType("OTHER", "COMPLEX<json>", 1111)


def druid_type(t: pa.DataType) -> DruidType:
    """The Druid type of an Arrow column type."""
    if pa.types.is_timestamp(t):
        return TIMESTAMP
    if pa.types.is_date(t):
        return DATE
    if pa.types.is_boolean(t):
        return BOOLEAN
    if pa.types.is_int64(t) or pa.types.is_uint64(t) or pa.types.is_uint32(t):
        return BIGINT
    if pa.types.is_integer(t):
        return INTEGER
    if pa.types.is_float32(t):
        return FLOAT
    if pa.types.is_floating(t):
        return DOUBLE
    if pa.types.is_decimal(t):
        return DECIMAL
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return VARCHAR
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = druid_type(t.value_type)
        return DruidType(f"{inner.sql} ARRAY", f"ARRAY<{inner.native}>", 2003)
    return OTHER
