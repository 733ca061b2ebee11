"""Deep storage on a pyarrow filesystem: a local folder by default; any pyarrow.fs URI (S3, GCS, HDFS) later.

Keys are relative paths below the storage's base; load specs keep Druid's shape
(``{"type": "local", "path": "/abs/path/index.parquet"}``). Every load spec is checked to point
inside the base before it is opened or deleted, so a load spec from the wire cannot reach other files.
"""

from __future__ import annotations

import posixpath
import shutil
import uuid
from typing import BinaryIO, cast

import pyarrow.fs as pafs

from overlord.core.protocols import LoadSpec
from overlord.errors import InvalidInput


def _clean_key(key: str) -> str:
    norm = posixpath.normpath(key.replace("\\", "/")).lstrip("/")
    if not key or norm in (".", "") or norm.startswith("..") or posixpath.isabs(key):
        raise InvalidInput(f"Invalid deep storage key [{key}]: must be a relative path inside deep storage")
    return norm


class FsDeepStorage:
    """Segments as files below ``base`` on a pyarrow filesystem."""

    def __init__(self, fs: pafs.FileSystem, base: str, load_spec_type: str = "local") -> None:
        self.fs = fs
        self.base = posixpath.normpath(base)
        self.load_spec_type = load_spec_type

    @classmethod
    def from_uri(cls, uri: str) -> FsDeepStorage:
        """``file:///abs/dir`` or a plain absolute path: a local folder (created if missing)."""
        fs, path = pafs.FileSystem.from_uri(uri if "://" in uri else f"file://{uri}")
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(path, recursive=True)
        return cls(fs, path)

    @property
    def uri(self) -> str:
        return f"file://{self.base}" if isinstance(self.fs, pafs.LocalFileSystem) else self.base

    # -- paths -----------------------------------------------------------------------------------

    def path_of(self, load_spec: LoadSpec) -> str:
        """The file a load spec names, refused unless it is inside this deep storage."""
        if not isinstance(load_spec, dict) or load_spec.get("type") != self.load_spec_type:
            raise InvalidInput(f"Invalid load spec {load_spec!r}: expected type [{self.load_spec_type}]")
        raw = load_spec.get("path")
        if not isinstance(raw, str) or not raw:
            raise InvalidInput(f"Invalid load spec {load_spec!r}: missing [path]")
        path = posixpath.normpath(raw)
        if not path.startswith(self.base + "/"):
            raise InvalidInput(f"Load spec path [{raw}] is outside deep storage [{self.base}]")
        return path

    def load_spec(self, key: str) -> LoadSpec:
        return {"type": self.load_spec_type, "path": posixpath.join(self.base, _clean_key(key))}

    def contains(self, load_spec: LoadSpec) -> bool:
        try:
            self.path_of(load_spec)
        except InvalidInput:
            return False
        return True

    # -- files -----------------------------------------------------------------------------------

    def write(self, key: str, source: str | BinaryIO) -> LoadSpec:
        spec = self.load_spec(key)
        dst = spec["path"]
        self.fs.create_dir(posixpath.dirname(dst), recursive=True)
        tmp = f"{dst}.{uuid.uuid4().hex}.tmp"
        with self.fs.open_output_stream(tmp) as out:
            if isinstance(source, str):
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 4 << 20)  # type: ignore[misc]
            else:
                shutil.copyfileobj(source, out, 4 << 20)  # type: ignore[misc]
        self.fs.move(tmp, dst)
        return spec

    def open(self, load_spec: LoadSpec) -> BinaryIO:
        return cast(BinaryIO, self.fs.open_input_file(self.path_of(load_spec)))

    def delete(self, load_spec: LoadSpec) -> None:
        path = self.path_of(load_spec)
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            return

    def delete_prefix(self, key_prefix: str) -> int:
        root = posixpath.join(self.base, _clean_key(key_prefix))
        info = self.fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            return 0
        if info.type == pafs.FileType.File:
            self.fs.delete_file(root)
            return 1
        count = sum(1 for f in self.fs.get_file_info(pafs.FileSelector(root, recursive=True)) if f.is_file)
        self.fs.delete_dir(root)
        return count

    def list(self, key_prefix: str) -> list[LoadSpec]:
        root = posixpath.join(self.base, _clean_key(key_prefix))
        selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
        files = sorted(f.path for f in self.fs.get_file_info(selector) if f.is_file and not f.path.endswith(".tmp"))
        return [{"type": self.load_spec_type, "path": p} for p in files]
