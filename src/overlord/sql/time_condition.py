"""``OVERWRITE WHERE``: a condition on ``__time`` (comparisons, AND, OR, BETWEEN) as the intervals it selects."""

from __future__ import annotations

from overlord.core.granularity import Granularity
from overlord.isotime import Interval, parse_instant_ms
from overlord.sql.sql_tokens import Token, fail, ident_value, string_value

TIME = "__time"
# Druid's eternity cannot be written as an ISO interval (locks and segment ids are ISO here), so
# ``ALL`` (PARTITIONED BY ALL, OVERWRITE ALL, an open-ended OVERWRITE WHERE) means these 9000 years.
ALL_TIME = Interval(parse_instant_ms("1000-01-01"), parse_instant_ms("9999-12-31"))


def _instant(sql: str, toks: list[Token], i: int) -> tuple[int, int]:
    """(epoch ms, next index) of a time literal: TIMESTAMP '...', DATE '...', '...' or a millis number."""
    tok = toks[i] if i < len(toks) else None
    if tok is None:
        raise fail(sql, len(sql), "OVERWRITE WHERE: expected a time literal")
    if tok.is_("TIMESTAMP", "DATE") and i + 1 < len(toks) and toks[i + 1].kind == "string":
        tok, i = toks[i + 1], i + 1
    if tok.kind == "string":
        text = string_value(tok).strip()
        if len(text) > 10 and text[10] == " ":
            text = text[:10] + "T" + text[11:]
        try:
            return parse_instant_ms(text), i + 1
        except ValueError:
            raise fail(sql, tok.start, f"OVERWRITE WHERE: [{string_value(tok)}] is not a timestamp") from None
    if tok.kind == "number":
        return int(float(tok.text)), i + 1
    raise fail(sql, tok.start, f"OVERWRITE WHERE: expected a time literal, got [{tok.text}]")


Ranges = list[tuple[int, int]]


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out = [(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b]
    return sorted((s, e) for s, e in out if s < e)


def _union(a: Ranges, b: Ranges) -> Ranges:
    out: Ranges = []
    for s, e in sorted(a + b):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class _Cond:
    """Recursive descent over ``__time`` comparisons joined by AND / OR, with parentheses and BETWEEN."""

    def __init__(self, sql: str, toks: list[Token]) -> None:
        self.sql, self.toks, self.i = sql, toks, 0

    def expr(self) -> Ranges:
        out = self.term()
        while self.i < len(self.toks) and self.toks[self.i].is_("OR"):
            self.i += 1
            out = _union(out, self.term())
        return out

    def term(self) -> Ranges:
        out = self.factor()
        while self.i < len(self.toks) and self.toks[self.i].is_("AND"):
            self.i += 1
            out = _intersect(out, self.factor())
        return out

    def factor(self) -> Ranges:
        toks = self.toks
        if self.i >= len(toks):
            raise fail(self.sql, len(self.sql), "OVERWRITE WHERE: unexpected end of condition")
        tok = toks[self.i]
        if tok.text == "(":
            self.i += 1
            out = self.expr()
            if self.i >= len(toks) or toks[self.i].text != ")":
                raise fail(self.sql, tok.start, "OVERWRITE WHERE: unbalanced parentheses")
            self.i += 1
            return out
        if tok.kind in ("word", "qident") and ident_value(tok) == TIME:
            self.i += 1
            if self.i < len(toks) and toks[self.i].is_("BETWEEN"):
                lo, self.i = _instant(self.sql, toks, self.i + 1)
                if self.i >= len(toks) or not toks[self.i].is_("AND"):
                    raise fail(self.sql, tok.start, "OVERWRITE WHERE: BETWEEN needs AND")
                hi, self.i = _instant(self.sql, toks, self.i + 1)
                return [(lo, hi + 1)] if lo <= hi else []
            op = toks[self.i].text if self.i < len(toks) else ""
            value, self.i = _instant(self.sql, toks, self.i + 1)
            return self._range(op, value, tok)
        if tok.kind in ("string", "number") or tok.is_("TIMESTAMP", "DATE"):
            value, j = _instant(self.sql, toks, self.i)
            if j < len(toks) - 1 and ident_value(toks[j + 1]) == TIME:
                op = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}.get(toks[j].text, "")
                self.i = j + 2
                return self._range(op, value, tok)
        raise fail(
            self.sql,
            tok.start,
            "OVERWRITE WHERE supports only comparisons of __time with timestamps, combined with AND, OR and BETWEEN",
        )

    def _range(self, op: str, value: int, tok: Token) -> Ranges:
        ranges = {
            ">=": (value, ALL_TIME.end),
            ">": (value + 1, ALL_TIME.end),
            "<": (ALL_TIME.start, value),
            "<=": (ALL_TIME.start, value + 1),
            "=": (value, value + 1),
        }
        if op not in ranges:
            raise fail(self.sql, tok.start, f"OVERWRITE WHERE: unsupported operator [{op}] on __time")
        return [ranges[op]]


def overwrite_intervals(sql: str, toks: list[Token], gran: Granularity) -> tuple[Interval, ...]:
    cond = _Cond(sql, toks)
    ranges = cond.expr()
    if cond.i != len(toks):
        raise fail(sql, toks[cond.i].start, f"OVERWRITE WHERE: unexpected token [{toks[cond.i].text}]")
    if not ranges:
        raise fail(sql, toks[0].start, "OVERWRITE WHERE selects no time at all")
    ranges = _intersect(ranges, [(ALL_TIME.start, ALL_TIME.end)])
    if not ranges:
        raise fail(sql, toks[0].start, f"OVERWRITE WHERE selects no time within {ALL_TIME}")
    for s, e in ranges:
        for edge in (s, e):
            if edge in (ALL_TIME.start, ALL_TIME.end):
                continue
            if gran.is_all or gran.truncate(edge) != edge:
                raise fail(
                    sql,
                    toks[0].start,
                    f"OVERWRITE WHERE clause identified interval [{Interval(s, e)}] which is not aligned with "
                    f"PARTITIONED BY granularity [{gran.name.upper()}]",
                )
    return tuple(Interval(s, e) for s, e in ranges)
