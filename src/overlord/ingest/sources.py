"""Input sources: which files (or inline text) a task reads, and reading them as line-aligned chunks.

Reading is by fixed-size byte chunks cut at the last newline, so memory stays bounded however
large the file is, and each chunk can be handed to a vectorised parser in one call.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from overlord.errors import ForbiddenPath
from overlord.ingest.spec import IndexSpec, InlineInputSource, LocalInputSource

CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class InputSplit:
    """One unit of input: a local file, or the inline data of the spec."""

    path: Path | None = None
    data: str | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "inline"

    def to_dict(self) -> dict[str, str]:
        """Serialisable form (to hand a split to a sub-task)."""
        return {"path": str(self.path)} if self.path is not None else {"data": self.data or ""}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> InputSplit:
        return cls(Path(d["path"])) if "path" in d else cls(data=d.get("data", ""))


def _below(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _check(real: Path, roots: tuple[Path, ...], field: str) -> None:
    if roots and not _below(real, roots):
        raise ForbiddenPath(f"{field}: '{real}' is outside the allowed directories", field=field)


def list_input_splits(spec: IndexSpec) -> list[InputSplit]:
    """Every input file (sorted, de-duplicated) or the inline data, re-checked against allowed dirs.

    ``filter`` matches file names anywhere below ``baseDir`` (Druid's wildcard filter); a pattern
    with a ``/`` matches the path relative to ``baseDir``. Symlinks pointing outside are refused.
    """
    src = spec.io_config.input_source
    if isinstance(src, InlineInputSource):
        return [InputSplit(data=src.data)]
    assert isinstance(src, LocalInputSource)
    roots = spec.allowed_dirs
    found: dict[Path, None] = {}
    for i, f in enumerate(src.files):
        real = Path(os.path.realpath(f))
        _check(real, roots, f"spec.ioConfig.inputSource.files[{i}]")
        found[real] = None
    if src.base_dir is not None:
        base = Path(os.path.realpath(src.base_dir))
        _check(base, roots, "spec.ioConfig.inputSource.baseDir")
        pattern = src.filter or "*"
        matched: list[Path] = []
        for dirpath, _dirs, names in os.walk(base, followlinks=False):
            for name in names:
                full = Path(dirpath) / name
                rel = full.relative_to(base).as_posix()
                target = rel if "/" in pattern else name
                if fnmatch.fnmatchcase(target, pattern):
                    matched.append(full)
        for full in sorted(matched):
            real = Path(os.path.realpath(full))
            if not _below(real, (base,)):
                _check(real, (), "")
                raise ForbiddenPath(
                    f"spec.ioConfig.inputSource.baseDir: '{full}' links outside baseDir",
                    field="spec.ioConfig.inputSource.baseDir",
                )
            _check(real, roots, "spec.ioConfig.inputSource.baseDir")
            if real.is_file():
                found[real] = None
    return [InputSplit(path=p) for p in found]


def split_evenly(splits: list[InputSplit], parts: int) -> list[list[InputSplit]]:
    """Distribute splits over ``parts`` sub-tasks, balancing by file size (largest first)."""
    parts = max(1, min(parts, len(splits)))
    buckets: list[list[InputSplit]] = [[] for _ in range(parts)]
    sizes = [0] * parts

    def size(s: InputSplit) -> int:
        return s.path.stat().st_size if s.path is not None and s.path.exists() else len(s.data or "")

    for s in sorted(splits, key=size, reverse=True):
        i = sizes.index(min(sizes))
        buckets[i].append(s)
        sizes[i] += size(s)
    return [b for b in buckets if b]


def open_split(split: InputSplit) -> BinaryIO:
    """A binary stream of the uncompressed content (gzip chosen by the ``.gz`` extension)."""
    if split.path is None:
        import io

        return io.BytesIO((split.data or "").encode())
    if split.path.suffix == ".gz":
        return gzip.open(split.path, "rb")  # type: ignore[return-value]
    return split.path.open("rb")


def iter_chunks(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield chunks that end at a newline (the last may lack one); never a partial line."""
    rest = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        data = rest + block if rest else block
        cut = data.rfind(b"\n")
        if cut == -1:
            rest = data
            continue
        rest = data[cut + 1 :]
        yield data[: cut + 1]
    if rest:
        yield rest
