"""Reading input as Arrow buffers must cut exactly the chunks the bytes reader cuts."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import pyarrow as pa
import pytest

from overlord.ingest import sources
from overlord.ingest.formats import JsonParser, _newline_rows
from overlord.ingest.spec import InputFormat


class _Trickle(io.RawIOBase):
    """A stream that hands out at most a few bytes per read, like a pipe."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data, self._pos, self._rng = data, 0, random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._rng.randint(1, 7), len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            buf = bytearray(size - len(out) if size >= 0 else 64)
            n = self.readinto(memoryview(buf))
            if not n:
                break
            out += buf[:n]
        return bytes(out)


def _text(rng: random.Random) -> bytes:
    lines = [b"x" * rng.randint(0, 40) for _ in range(rng.randint(0, 60))]
    tail = b"" if rng.random() < 0.3 else b"\n"
    return b"\n".join(lines) + tail


@pytest.mark.parametrize("seed", range(60))
def test_buffers_cut_the_same_chunks_as_bytes(seed: int) -> None:
    rng = random.Random(seed)
    data = _text(rng)
    size = rng.randint(1, 64)
    want = list(sources.iter_chunks(io.BytesIO(data), size))
    got = [b.to_pybytes() for b in sources.iter_buffers(io.BytesIO(data), size)]
    assert got == want
    trickled = [b.to_pybytes() for b in sources.iter_buffers(io.BufferedReader(_Trickle(data, seed)), size)]
    assert trickled == want
    for chunk in want:
        assert _newline_rows(pa.py_buffer(chunk)) == _newline_rows(chunk)


@pytest.mark.parametrize("seed", range(60))
def test_mapped_files_cut_the_same_chunks(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain file is mapped, not read; its chunks (and dropped pages) must not change a byte."""
    rng = random.Random(seed)
    data = b"".join(_text(rng) for _ in range(rng.randint(1, 40)))
    size = rng.randint(1, 300)
    monkeypatch.setattr(sources, "MAPPED_LAG_CHUNKS", rng.randint(0, 3))  # drop pages as early as possible
    path = tmp_path / "in.json"
    path.write_bytes(data)
    want = list(sources.iter_chunks(io.BytesIO(data), size))
    with path.open("rb") as stream:
        assert sources._mapping(stream) is not None or not data
        got = [b.to_pybytes() for b in sources.iter_buffers(stream, size)]
    assert got == want
    with path.open("rb") as stream:
        held = list(sources.iter_buffers(stream, size))  # pages dropped behind the reader read back whole
    assert [b.to_pybytes() for b in held] == want


def test_only_unread_plain_files_are_mapped(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b'{"a": 1}\n')
    with path.open("rb") as stream:
        assert sources._mapping(stream) is not None
        stream.read(1)
        assert sources._mapping(stream) is None  # a position past 0 reads the rest instead
    (tmp_path / "empty.json").write_bytes(b"")
    with (tmp_path / "empty.json").open("rb") as stream:
        assert sources._mapping(stream) is None
        assert list(sources.iter_buffers(stream, 4)) == []
    assert sources._mapping(io.BytesIO(b"x\n")) is None
    gz = tmp_path / "a.json.gz"
    gz.write_bytes(gzip.compress(b"x\n"))
    with sources.open_split(sources.InputSplit(path=gz)) as stream:
        assert sources._mapping(stream) is None


def test_a_line_longer_than_the_search_window_is_kept_whole() -> None:
    long_line = b"y" * (3 * sources._TAIL) + b"\n"
    data = b"a\n" + long_line + b"b"
    got = [b.to_pybytes() for b in sources.iter_buffers(io.BytesIO(data), len(data) - 1)]
    assert got == list(sources.iter_chunks(io.BytesIO(data), len(data) - 1))


def test_json_parser_reads_a_buffer_like_bytes() -> None:
    chunk = b'{"a": 1}\nnot json\n{"a": 2}\n'
    parser = JsonParser(InputFormat(type="json"))
    from_bytes = parser.parse(chunk, True)
    from_buffer = parser.parse(pa.py_buffer(chunk), True)
    assert from_buffer.table.equals(from_bytes.table)
    assert from_buffer.bad == from_bytes.bad == [(1, "not json", "Unable to parse row [not json]")]
    assert from_buffer.nbytes == len(chunk)


@pytest.mark.parametrize("size", [0, 1, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, 3 * (1 << 16) + 7])
def test_newline_count_across_count_blocks(size: int) -> None:
    rng = random.Random(size)
    data = bytes(rng.choice(b"ab\n") for _ in range(size))
    assert _newline_rows(pa.py_buffer(data)) == _newline_rows(data) == len(data.splitlines())
