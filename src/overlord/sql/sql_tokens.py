"""Tokens of Druid SQL text, for the statement frame that SQL-based ingestion parses itself.

Strings, quoted identifiers and comments are recognised so keywords inside them never count; each
token keeps its offsets, so a part of the statement is handed on as the user wrote it. Errors are
``SqlError`` (a 400) naming the line and column, as Druid's planner does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from overlord.errors import SqlError

_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<comment>--[^\n]*|/\*.*?\*/)|(?P<string>'(?:[^']|'')*')|(?P<qident>"(?:[^"]|"")*")
    |(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)|(?P<word>[A-Za-z_][A-Za-z_0-9$]*)
    |(?P<op>=>|<=|>=|<>|!=|\|\||::|[(),.;*+\-/%<>=?\[\]{}:~^&|!@#])""",
    re.X | re.S,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    def is_(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def fail(sql: str, pos: int | None, message: str) -> SqlError:
    if pos is None:
        return SqlError(message)
    line = sql.count("\n", 0, pos) + 1
    column = pos - (sql.rfind("\n", 0, pos) + 1) + 1
    return SqlError(f"{message} (line [{line}], column [{column}])", line=line, column=column)


def tokenize(sql: str) -> list[Token]:
    """Significant tokens (no whitespace or comments); an unknown character or open quote is an error."""
    out: list[Token] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None or m.end() == pos:
            ch = sql[pos]
            what = "Unterminated string literal" if ch in "'\"" else f"Unexpected character [{ch}]"
            raise fail(sql, pos, what)
        kind = m.lastgroup or "op"
        if kind not in ("ws", "comment"):
            out.append(Token(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


def string_value(tok: Token) -> str:
    return tok.text[1:-1].replace("''", "'")


def ident_value(tok: Token) -> str:
    return tok.text[1:-1].replace('""', '"') if tok.kind == "qident" else tok.text


def sql_literal(value: Any, sql_type: str | None = None) -> str:
    """A dynamic parameter's value as SQL text (Druid's ``parameters``: ``{"type", "value"}``)."""
    t = (sql_type or "").upper()
    if value is None:
        return "NULL"
    if isinstance(value, bool) or t == "BOOLEAN":
        return "TRUE" if value in (True, "true", 1) else "FALSE"
    if t in ("TIMESTAMP", "DATE"):
        return f"{t} '{str(value).replace(chr(39), chr(39) * 2)}'"
    if isinstance(value, int | float) and t not in ("VARCHAR", "CHAR"):
        return repr(value)
    if t in ("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "REAL", "DECIMAL") and isinstance(value, str):
        try:
            return repr(float(value)) if t in ("DOUBLE", "FLOAT", "REAL", "DECIMAL") else str(int(value))
        except ValueError:
            raise SqlError(f"parameters: value [{value}] is not a {t}", field="parameters") from None
    return "'" + str(value).replace("'", "''") + "'"


def bind_parameters(sql: str, parameters: list[Any] | None) -> str:
    """Replace each ``?`` with the matching parameter, rendered as a literal."""
    params = parameters or []
    marks = [t for t in tokenize(sql) if t.kind == "op" and t.text == "?"]
    if len(marks) != len(params):
        raise SqlError(
            f"parameters: the statement has {len(marks)} dynamic parameters (?) but {len(params)} were given",
            field="parameters",
        )
    out, last = [], 0
    for i, (tok, p) in enumerate(zip(marks, params, strict=True)):
        if not isinstance(p, dict) or "value" not in p:
            raise SqlError(f'parameters[{i}]: expected {{"type": ..., "value": ...}}', field="parameters")
        out.append(sql[last : tok.start])
        out.append(sql_literal(p.get("value"), p.get("type")))
        last = tok.end
    out.append(sql[last:])
    return "".join(out)


def matching(toks: list[Token], i: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``i``, or -1."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "(":
            depth += 1
        elif toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def top_level(toks: list[Token], start: int = 0, end: int | None = None) -> list[int]:
    """Indices of tokens at parenthesis depth 0 in ``toks[start:end]``."""
    out, depth = [], 0
    for j in range(start, len(toks) if end is None else end):
        t = toks[j].text
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        elif depth == 0:
            out.append(j)
    return out


def split_commas(toks: list[Token]) -> list[list[Token]]:
    """A list of tokens cut at its commas (callers pass one parenthesis level)."""
    groups: list[list[Token]] = [[]]
    for t in toks:
        if t.text == ",":
            groups.append([])
        else:
            groups[-1].append(t)
    return groups
