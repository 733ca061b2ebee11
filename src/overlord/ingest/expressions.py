"""A subset of Druid's expression language: parse once at validation, evaluate per row.

Types follow Druid: integer literals and long inputs stay ``int`` (long math, integer division),
anything with a decimal is ``float`` (double math), strings concatenate with ``+``. Comparisons
and logic return 1/0 longs. Null propagates through arithmetic (SQL-compatible null handling).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from overlord.core import granularity
from overlord.ingest import timestamps
from overlord.ingest.filters import like_to_regex
from overlord.isotime import format_ms

Row = dict[str, object]
Fn = Callable[[Row], object]


class ExprError(ValueError):
    """The expression text is not valid."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
    | (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<qid>"(?:[^"\\]|\\.)*")
    | (?P<id>[A-Za-z_$][A-Za-z0-9_$.]*)
    | (?P<op><=|>=|==|!=|&&|\|\||[-+*/%^<>!(),\[\]])
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected character at position {pos}: '{text[pos : pos + 10]}'")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    out.append(("end", ""))
    return out


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s[1:-1])


@dataclass(frozen=True)
class Expr:
    """A compiled expression: ``fn(row)`` evaluates it; ``identifiers`` are the inputs it reads."""

    text: str
    fn: Fn
    identifiers: frozenset[str]

    def __call__(self, row: Row) -> object:
        return self.fn(row)


# ---- value helpers -------------------------------------------------------------------------


def truthy(v: object) -> bool:
    if v is None:
        return False
    if isinstance(v, str):
        return v.strip().lower() == "true"
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    return bool(v)


def to_number(v: object) -> int | float | None:
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v  # type: ignore[return-value]
    if isinstance(v, bool):
        return int(v)
    text = str(v).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def to_str(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return repr(v)
    return str(v)


def _arith(op: str, a: object, b: object) -> object:
    if a is None or b is None:
        return None
    if op == "+" and (isinstance(a, str) or isinstance(b, str)):
        return f"{to_str(a)}{to_str(b)}"
    x, y = to_number(a), to_number(b)
    if x is None or y is None:
        return None
    both_long = isinstance(x, int) and isinstance(y, int)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        if both_long:
            if y == 0:
                return None
            q = abs(x) // abs(y)
            return q if (x >= 0) == (y >= 0) else -q
        if y == 0:
            return math.nan if x == 0 or math.isnan(x) else math.copysign(math.inf, x)
        return x / y
    if op == "%":
        if y == 0:
            return None if both_long else math.nan
        return math.fmod(x, y) if not both_long else int(math.fmod(x, y))
    if op == "^":
        if both_long and y >= 0:
            return int(x**y)
        return float(x) ** float(y)
    raise ExprError(f"unknown operator {op}")


def _compare(op: str, a: object, b: object) -> object:
    if a is None or b is None:
        return None
    if isinstance(a, str) and isinstance(b, str):
        x: object
        y: object
        x, y = a, b
    else:
        x, y = to_number(a), to_number(b)
        if x is None or y is None:
            x, y = to_str(a), to_str(b)
    res = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y, "==": x == y, "!=": x != y}[op]  # type: ignore[operator]
    return 1 if res else 0


# ---- timestamp helpers ---------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ts_extract(ms: object, unit: object) -> object:
    if ms is None:
        return None
    t = int(to_number(ms) or 0)
    d = _dt(t)
    u = str(unit).upper()
    table: dict[str, Callable[[], int]] = {
        "EPOCH": lambda: t // 1000,
        "MILLISECOND": lambda: t % 1000,
        "SECOND": lambda: d.second,
        "MINUTE": lambda: d.minute,
        "HOUR": lambda: d.hour,
        "DAY": lambda: d.day,
        "DOW": lambda: d.isoweekday(),
        "ISODOW": lambda: d.isoweekday(),
        "DOY": lambda: d.timetuple().tm_yday,
        "WEEK": lambda: d.isocalendar()[1],
        "MONTH": lambda: d.month,
        "QUARTER": lambda: (d.month - 1) // 3 + 1,
        "YEAR": lambda: d.year,
        "ISOYEAR": lambda: d.isocalendar()[0],
        "DECADE": lambda: d.year // 10,
        "CENTURY": lambda: (d.year - 1) // 100 + 1,
        "MILLENNIUM": lambda: (d.year - 1) // 1000 + 1,
    }
    if u not in table:
        raise ExprError(f"unknown unit '{unit}'")
    return table[u]()


def _ts_format(ms: object, pattern: object = None) -> object:
    if ms is None:
        return None
    t = int(to_number(ms) or 0)
    if pattern is None:
        return format_ms(t)
    d = _dt(t)
    fmt = timestamps.joda_to_strptime(str(pattern))
    return d.strftime(fmt.replace("%f", f"{t % 1000:03d}"))


def _ts_parse(s: object, pattern: object = None) -> object:
    if s is None:
        return None
    try:
        return timestamps.parse_value(s, "iso" if pattern is None else str(pattern))
    except (timestamps.TimestampError, ValueError):
        return None


def _ts_floor(ms: object, period: object) -> object:
    if ms is None:
        return None
    return granularity.from_period(str(period)).truncate(int(to_number(ms) or 0))


def _cast(v: object, kind: object) -> object:
    if v is None:
        return None
    k = str(kind).upper()
    if k == "STRING":
        return to_str(v)
    n = to_number(v)
    if k == "LONG":
        return None if n is None else int(n)
    if k in ("DOUBLE", "FLOAT"):
        return None if n is None else float(n)
    raise ExprError(f"cannot cast to '{kind}'")


def _substring(s: object, index: object, length: object = -1) -> object:
    if s is None:
        return None
    text, i, n = str(s), int(to_number(index) or 0), int(to_number(length) or 0)
    if i >= len(text) or i < 0:
        return None
    return text[i:] if n < 0 else text[i : i + n]


def _strpos(s: object, needle: object, start: object = 0) -> object:
    if s is None or needle is None:
        return None
    return str(s).find(str(needle), int(to_number(start) or 0))


def _trim(kind: str) -> Callable[..., object]:
    def fn(s: object, chars: object = " ") -> object:
        if s is None:
            return None
        c = str(chars)
        return {"both": str(s).strip(c), "left": str(s).lstrip(c), "right": str(s).rstrip(c)}[kind]

    return fn


def _null_safe(f: Callable[..., object]) -> Callable[..., object]:
    def wrapper(*args: object) -> object:
        if any(a is None for a in args):
            return None
        return f(*args)

    return wrapper


def _concat(*args: object) -> object:
    if any(a is None for a in args):
        return None
    return "".join(to_str(a) or "" for a in args)


def _order_key(v: object) -> Any:
    return to_number(v) if not isinstance(v, str) else v


def _greatest(*args: object) -> object:
    vals = [a for a in args if a is not None]
    return max(vals, key=_order_key) if vals else None


def _least(*args: object) -> object:
    vals = [a for a in args if a is not None]
    return min(vals, key=_order_key) if vals else None


def _num1(f: Callable[[float], object]) -> Callable[[object], object]:
    def fn(v: object) -> object:
        n = to_number(v)
        return None if n is None else f(n)

    return fn


# name -> (function, min args, max args); "lazy" functions (if, nvl, case) are handled in the parser.
_FUNCS: dict[str, tuple[Callable[..., object], int, int]] = {
    "concat": (_concat, 0, 99),
    "lower": (_null_safe(lambda s: to_str(s).lower()), 1, 1),  # type: ignore[union-attr]
    "upper": (_null_safe(lambda s: to_str(s).upper()), 1, 1),  # type: ignore[union-attr]
    "strlen": (_null_safe(lambda s: len(to_str(s) or "")), 1, 1),
    "substring": (_substring, 2, 3),
    "left": (_null_safe(lambda s, n: str(s)[: int(to_number(n) or 0)]), 2, 2),
    "right": (_null_safe(lambda s, n: str(s)[-int(to_number(n) or 0) :] if to_number(n) else ""), 2, 2),
    "replace": (_null_safe(lambda s, a, b: str(s).replace(str(a), str(b))), 3, 3),
    "trim": (_trim("both"), 1, 2),
    "ltrim": (_trim("left"), 1, 2),
    "rtrim": (_trim("right"), 1, 2),
    "strpos": (_strpos, 2, 3),
    "reverse": (_null_safe(lambda s: str(s)[::-1]), 1, 1),
    "repeat": (_null_safe(lambda s, n: str(s) * int(to_number(n) or 0)), 2, 2),
    "lpad": (_null_safe(lambda s, n, p: str(s).rjust(int(to_number(n) or 0), str(p))[: int(to_number(n) or 0)]), 3, 3),
    "rpad": (_null_safe(lambda s, n, p: str(s).ljust(int(to_number(n) or 0), str(p))[: int(to_number(n) or 0)]), 3, 3),
    "isnull": (lambda v: 1 if v is None else 0, 1, 1),
    "notnull": (lambda v: 0 if v is None else 1, 1, 1),
    "abs": (_num1(abs), 1, 1),
    "floor": (_num1(lambda n: math.floor(n) if isinstance(n, float) else n), 1, 1),
    "ceil": (_num1(lambda n: math.ceil(n) if isinstance(n, float) else n), 1, 1),
    "round": (_num1(lambda n: float(round(n)) if isinstance(n, float) else n), 1, 1),
    "sqrt": (_num1(lambda n: math.sqrt(n) if n >= 0 else math.nan), 1, 1),
    "greatest": (_greatest, 1, 99),
    "least": (_least, 1, 99),
    "cast": (_cast, 2, 2),
    "timestamp": (_ts_parse, 1, 2),
    "timestamp_parse": (_ts_parse, 1, 3),
    "timestamp_format": (_ts_format, 1, 3),
    "timestamp_floor": (_ts_floor, 2, 4),
    "timestamp_extract": (_ts_extract, 2, 3),
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.idents: set[str] = set()

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, val = self.take()
        if val != value or kind not in ("op",):
            raise ExprError(f"expected '{value}' but found '{val or 'end of expression'}'")

    def parse(self) -> Fn:
        fn = self.binary(0)
        if self.peek()[0] != "end":
            raise ExprError(f"unexpected '{self.peek()[1]}'")
        return fn

    _LEVELS = [("||",), ("&&",), ("<", "<=", ">", ">=", "==", "!="), ("+", "-"), ("*", "/", "%")]

    def binary(self, level: int) -> Fn:
        if level == len(self._LEVELS):
            return self.power()
        left = self.binary(level + 1)
        ops = self._LEVELS[level]
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = self._combine(op, left, right)
        return left

    @staticmethod
    def _combine(op: str, left: Fn, right: Fn) -> Fn:
        if op == "&&":
            return lambda r: 1 if truthy(left(r)) and truthy(right(r)) else 0
        if op == "||":
            return lambda r: 1 if truthy(left(r)) or truthy(right(r)) else 0
        if op in ("<", "<=", ">", ">=", "==", "!="):
            return lambda r: _compare(op, left(r), right(r))
        return lambda r: _arith(op, left(r), right(r))

    def power(self) -> Fn:
        base = self.unary()
        if self.peek() == ("op", "^"):
            self.take()
            exp = self.power()
            return lambda r: _arith("^", base(r), exp(r))
        return base

    def unary(self) -> Fn:
        kind, val = self.peek()
        if kind == "op" and val == "-":
            self.take()
            inner = self.unary()
            return lambda r: _arith("*", inner(r), -1) if inner(r) is not None else None
        if kind == "op" and val == "!":
            self.take()
            inner = self.unary()
            return lambda r: 0 if truthy(inner(r)) else 1
        return self.primary()

    def args(self) -> list[Fn]:
        self.expect("(")
        out: list[Fn] = []
        if self.peek() == ("op", ")"):
            self.take()
            return out
        while True:
            out.append(self.binary(0))
            _kind, val = self.take()
            if val == ")":
                return out
            if val != ",":
                raise ExprError(f"expected ',' or ')' but found '{val or 'end of expression'}'")

    def primary(self) -> Fn:
        kind, val = self.take()
        if kind == "num":
            num: object = float(val) if any(c in val for c in ".eE") else int(val)
            return lambda r: num
        if kind == "str":
            s = _unescape(val)
            return lambda r: s
        if kind == "qid":
            name = _unescape(val)
            self.idents.add(name)
            return lambda r: r.get(name)
        if kind == "id":
            if self.peek() == ("op", "("):
                return self.call(val)
            if val == "null":
                return lambda r: None
            self.idents.add(val)
            return lambda r: r.get(val)
        if kind == "op" and val == "(":
            inner = self.binary(0)
            self.expect(")")
            return inner
        raise ExprError(f"unexpected '{val or 'end of expression'}'")

    def call(self, name: str) -> Fn:
        args = self.args()
        lname = name.lower()
        if lname == "if":
            if len(args) != 3:
                raise ExprError("function 'if' needs 3 arguments")
            c, a, b = args
            return lambda r: a(r) if truthy(c(r)) else b(r)
        if lname in ("nvl", "coalesce"):
            if len(args) < 2:
                raise ExprError(f"function '{name}' needs at least 2 arguments")

            def first_non_null(r: Row) -> object:
                for f in args:
                    v = f(r)
                    if v is not None:
                        return v
                return None

            return first_non_null
        if lname == "case_searched":
            if len(args) < 2:
                raise ExprError("function 'case_searched' needs at least 2 arguments")
            pairs = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
            default = args[-1] if len(args) % 2 else None

            def searched(r: Row) -> object:
                for cond, val in pairs:
                    if truthy(cond(r)):
                        return val(r)
                return default(r) if default else None

            return searched
        if lname == "case_simple":
            if len(args) < 3:
                raise ExprError("function 'case_simple' needs at least 3 arguments")
            subject, rest = args[0], args[1:]
            spairs = [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
            sdefault = rest[-1] if len(rest) % 2 else None

            def simple(r: Row) -> object:
                v = subject(r)
                for cand, val in spairs:
                    if _compare("==", v, cand(r)) == 1:
                        return val(r)
                return sdefault(r) if sdefault else None

            return simple
        if lname == "like":
            if len(args) not in (2, 3):
                raise ExprError("function 'like' needs 2 or 3 arguments")
            pattern = self._literal(args[1], "like pattern")
            escape = self._literal(args[2], "like escape") if len(args) == 3 else None
            rx = re.compile(like_to_regex(str(pattern), str(escape) if escape else None))
            subj = args[0]
            return lambda r: None if (v := subj(r)) is None else (1 if rx.match(to_str(v) or "") else 0)
        if lname not in _FUNCS:
            raise ExprError(f"unknown function '{name}'")
        func, lo, hi = _FUNCS[lname]
        if not lo <= len(args) <= hi:
            raise ExprError(f"function '{name}' needs {lo}..{hi} arguments, got {len(args)}")
        if lname == "timestamp_floor":
            granularity.parse_period_ms(str(self._literal(args[1], "period")))
        if lname == "timestamp_extract":
            _ts_extract(0, self._literal(args[1], "unit"))
        if lname == "cast":
            _cast(0, self._literal(args[1], "type"))
        if lname in ("timestamp_format", "timestamp_parse", "timestamp") and len(args) > 1:
            timestamps.validate_format(str(self._literal(args[1], "pattern")))
        if lname in ("timestamp_format", "timestamp_floor", "timestamp_parse", "timestamp_extract"):
            args = args[:2]
        return lambda r: func(*(a(r) for a in args))

    @staticmethod
    def _literal(fn: Fn, what: str) -> object:
        try:
            return fn({})
        except Exception:
            raise ExprError(f"{what} must be a literal") from None


def parse(text: str) -> Expr:
    """Compile expression text; raises ExprError with a readable reason."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("expression is empty")
    p = _Parser(text)
    try:
        fn = p.parse()
    except ExprError:
        raise
    except ValueError as exc:
        raise ExprError(str(exc)) from None
    return Expr(text, fn, frozenset(p.idents))


def evaluate(text: str, row: Row | None = None) -> object:
    """Parse and evaluate in one go (tests and one-off use)."""
    return parse(text)(row or {})
