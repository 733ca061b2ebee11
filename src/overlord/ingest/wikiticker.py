"""A deterministic wikiticker-like data generator, the shape of Druid's quickstart file.

Tests and benchmarks need the same rows on every run without shipping a data file, so rows
come from a seeded ``random.Random`` and are written as newline-delimited JSON.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

DAY_START_MS = 1_442_016_000_000  # 2015-09-12T00:00:00Z
DAY_MS = 86_400_000

_CHANNELS = [
    "#en.wikipedia",
    "#it.wikipedia",
    "#fr.wikipedia",
    "#de.wikipedia",
    "#es.wikipedia",
    "#ru.wikipedia",
    "#ja.wikipedia",
    "#vi.wikipedia",
    "#zh.wikipedia",
    "#pl.wikipedia",
]
_COUNTRIES = [
    ("US", "United States", "NY", "New York", "New York", 501),
    ("IT", "Italy", "LO", "Lombardy", "Milan", None),
    ("FR", "France", "IDF", "Ile-de-France", "Paris", None),
    ("DE", "Germany", "BE", "Berlin", "Berlin", None),
    ("ES", "Spain", "MD", "Madrid", "Madrid", None),
    ("JP", "Japan", "13", "Tokyo", "Tokyo", None),
    ("BR", "Brazil", "SP", "Sao Paulo", "Sao Paulo", None),
    ("AU", "Australia", "NSW", "New South Wales", "Sydney", None),
]
_NAMESPACES = ["Main", "User", "Talk", "Wikipedia", "Category", "Template", "File"]
_WORDS = [
    "Gypsy",
    "Danger",
    "Cherno",
    "Alpha",
    "Striker",
    "Eureka",
    "Crimson",
    "Typhoon",
    "Coyote",
    "Tango",
    "Romeo",
    "Blue",
    "Horizon",
    "Brave",
    "Echo",
    "Saber",
    "Titan",
    "Redeemer",
    "Obsidian",
    "Fury",
    "Guardian",
    "Bravo",
    "Valor",
    "Omega",
    "Wanderer",
    "Saber",
    "Athena",
]


def _iso(ms: int) -> str:
    secs, milli = divmod(ms, 1000)
    day_secs = secs % 86_400
    h, rem = divmod(day_secs, 3600)
    m, s = divmod(rem, 60)
    return f"2015-09-12T{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def iter_rows(rows: int, *, seed: int = 42) -> Iterator[dict[str, object]]:
    """Yield ``rows`` wikiticker-like events in time order over 2015-09-12 (UTC)."""
    rnd = random.Random(seed)
    step = DAY_MS / max(rows, 1)
    users = [f"{rnd.choice(_WORDS)}{rnd.randint(1, 9999)}" for _ in range(5000)]
    pages = [" ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(1, 4))) for _ in range(20000)]
    for i in range(rows):
        iso, cname, region_iso, region, city, metro = rnd.choice(_COUNTRIES)
        anonymous = rnd.random() < 0.2
        added = int(rnd.expovariate(1 / 200))
        deleted = int(rnd.expovariate(1 / 60)) if rnd.random() < 0.4 else 0
        yield {
            "time": _iso(DAY_START_MS + int(i * step)),
            "channel": rnd.choice(_CHANNELS),
            "cityName": city if anonymous else None,
            "comment": f"/* {rnd.choice(_WORDS)} */ edit {rnd.randint(1, 100000)}",
            "countryIsoCode": iso if anonymous else None,
            "countryName": cname if anonymous else None,
            "isAnonymous": anonymous,
            "isMinor": rnd.random() < 0.3,
            "isNew": rnd.random() < 0.1,
            "isRobot": rnd.random() < 0.15,
            "isUnpatrolled": rnd.random() < 0.1,
            "metroCode": metro if anonymous else None,
            "namespace": rnd.choice(_NAMESPACES),
            "page": rnd.choice(pages),
            "regionIsoCode": region_iso if anonymous else None,
            "regionName": region if anonymous else None,
            "user": rnd.choice(users),
            "delta": added - deleted,
            "added": added,
            "deleted": deleted,
        }


def write_rows(out: BinaryIO, rows: int, *, seed: int = 42) -> int:
    """Write newline-delimited JSON to a binary stream; return the number of bytes written."""
    total = 0
    buf: list[bytes] = []
    for row in iter_rows(rows, seed=seed):
        buf.append(orjson.dumps(row) + b"\n")
        if len(buf) >= 10_000:
            data = b"".join(buf)
            out.write(data)
            total += len(data)
            buf.clear()
    data = b"".join(buf)
    out.write(data)
    return total + len(data)


def write_file(path: Path, rows: int, *, seed: int = 42, gzip_output: bool | None = None) -> Path:
    """Write ``rows`` events to ``path``; gzip when asked or when the name ends in ``.gz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    use_gzip = path.suffix == ".gz" if gzip_output is None else gzip_output
    if use_gzip:
        with gzip.open(path, "wb", compresslevel=1) as fh:
            write_rows(fh, rows, seed=seed)  # type: ignore[arg-type]  # GzipFile is a binary stream
    else:
        with path.open("wb") as fh:
            write_rows(fh, rows, seed=seed)
    return path


def quickstart_spec(base_dir: str, file_filter: str, *, data_source: str = "wikipedia_auto") -> dict[str, object]:
    """The reference's submit example (Druid's quickstart spec) reading ``base_dir``/``file_filter``."""
    return {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": data_source,
                "timestampSpec": {"column": "time", "format": "iso"},
                "dimensionsSpec": {"useSchemaDiscovery": True},
                "granularitySpec": {
                    "type": "uniform",
                    "segmentGranularity": "day",
                    "intervals": ["2015-09-12/2015-09-13"],
                },
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "local", "baseDir": base_dir, "filter": file_filter},
                "inputFormat": {"type": "json"},
            },
        },
    }
