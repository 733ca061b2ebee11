"""Deep storage on a pyarrow filesystem: a local folder by default; any pyarrow.fs URI (S3, GCS, HDFS) later.

Keys are relative paths below the storage's base; load specs keep Druid's shape
(``{"type": "local", "path": "/abs/path/index.parquet"}``). Every load spec is checked to point
inside the base before it is opened or deleted, so a load spec from the wire cannot reach other
files: ``..`` is normalised away before the check, and on a local filesystem the real path (symlinks
followed) must be inside the real base too.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from typing import BinaryIO, cast

import pyarrow.fs as pafs

from overlord.core.protocols import LoadSpec
from overlord.errors import InvalidInput

COPY_CHUNK = 4 << 20
TMP_SUFFIX = ".tmp"


def clean_key(key: str) -> str:
    """A key as a normalised relative path; refuses empty keys, absolute keys and any ``..`` part."""
    if not isinstance(key, str) or not key or "\x00" in key:
        raise InvalidInput(f"Invalid deep storage key [{key!r}]: must be a non-empty relative path")
    parts = key.replace("\\", "/").split("/")
    if key.startswith(("/", "\\")) or ".." in parts:
        raise InvalidInput(f"Invalid deep storage key [{key}]: must be a relative path inside deep storage")
    norm = posixpath.normpath("/".join(parts))
    if norm in (".", ""):
        raise InvalidInput(f"Invalid deep storage key [{key}]: must name something inside deep storage")
    return norm


def load_spec_path(load_spec: object, load_spec_type: str) -> str:
    """The ``path`` of a load spec of the expected type, or InvalidInput naming what is wrong."""
    if not isinstance(load_spec, dict) or load_spec.get("type") != load_spec_type:
        raise InvalidInput(f"Invalid load spec {load_spec!r}: expected type [{load_spec_type}]")
    raw = load_spec.get("path")
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise InvalidInput(f"Invalid load spec {load_spec!r}: missing [path]")
    return raw


class FsDeepStorage:
    """Segments as files below ``base`` on a pyarrow filesystem."""

    def __init__(self, fs: pafs.FileSystem, base: str, load_spec_type: str = "local") -> None:
        self.fs = fs
        self.base = posixpath.normpath(base)
        self.load_spec_type = load_spec_type
        self._local = isinstance(fs, pafs.LocalFileSystem)
        self._real_base = os.path.realpath(self.base) if self._local else self.base

    @classmethod
    def from_uri(cls, uri: str) -> FsDeepStorage:
        """``file:///abs/dir`` or a plain path: a local folder (created if missing); else any pyarrow URI."""
        fs, path = pafs.FileSystem.from_uri(uri if "://" in uri else f"file://{os.path.abspath(uri)}")
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(path, recursive=True)
        return cls(fs, path)

    @property
    def uri(self) -> str:
        return f"file://{self.base}" if self._local else self.base

    # -- paths -----------------------------------------------------------------------------------

    def _inside(self, path: str) -> bool:
        if not path.startswith(self.base + "/"):
            return False
        if not self._local:
            return True
        real = os.path.realpath(path)
        return real.startswith(self._real_base + "/")

    def path_of(self, load_spec: LoadSpec) -> str:
        """The file a load spec names, refused unless it is inside this deep storage."""
        raw = load_spec_path(load_spec, self.load_spec_type)
        path = posixpath.normpath(raw)
        if not self._inside(path):
            raise InvalidInput(f"Load spec path [{raw}] is outside deep storage [{self.base}]")
        return path

    def _path_of_key(self, key: str) -> str:
        path = posixpath.join(self.base, clean_key(key))
        if self._local:
            # A symlink on the way must not lead a write, list or delete out of the base.
            real = os.path.realpath(path)
            if not real.startswith(self._real_base + "/"):
                raise InvalidInput(f"Invalid deep storage key [{key}]: leads outside deep storage")
        return path

    def load_spec(self, key: str) -> LoadSpec:
        return {"type": self.load_spec_type, "path": self._path_of_key(key)}

    def contains(self, load_spec: LoadSpec) -> bool:
        try:
            self.path_of(load_spec)
        except InvalidInput:
            return False
        return True

    # -- files -----------------------------------------------------------------------------------

    def write(self, key: str, source: str | BinaryIO) -> LoadSpec:
        """Copy to a temporary name beside the target, then rename: readers never see half a file."""
        dst = self._path_of_key(key)
        self.fs.create_dir(posixpath.dirname(dst), recursive=True)
        tmp = f"{dst}.{uuid.uuid4().hex}{TMP_SUFFIX}"
        if isinstance(source, str) and self._link(source, tmp):  # same local filesystem: no copy at all
            self.fs.move(tmp, dst)
            return {"type": self.load_spec_type, "path": dst}
        try:
            with self.fs.open_output_stream(tmp) as out:
                if isinstance(source, str):
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, COPY_CHUNK)  # type: ignore[misc]
                else:
                    shutil.copyfileobj(source, out, COPY_CHUNK)  # type: ignore[misc]
            self.fs.move(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise
        return {"type": self.load_spec_type, "path": dst}

    def copy(self, load_spec: LoadSpec, key: str) -> LoadSpec:
        source = self.path_of(load_spec)
        dst = self._path_of_key(key)
        self.fs.create_dir(posixpath.dirname(dst), recursive=True)
        tmp = f"{dst}.{uuid.uuid4().hex}{TMP_SUFFIX}"
        if self._link(source, tmp):
            self.fs.move(tmp, dst)
            return {"type": self.load_spec_type, "path": dst}
        with self.open(load_spec) as src:
            return self.write(key, src)

    def _link(self, source: str, tmp: str) -> bool:
        """A hard link instead of a copy when source and deep storage share a local filesystem; the
        source file stays as it was (the caller still owns it)."""
        if not isinstance(self.fs, pafs.LocalFileSystem):
            return False
        try:
            os.link(source, tmp)
        except OSError:  # another filesystem (EXDEV), or links not supported: copy instead
            return False
        return True

    def open(self, load_spec: LoadSpec) -> BinaryIO:
        return cast(BinaryIO, self.fs.open_input_file(self.path_of(load_spec)))

    def delete(self, load_spec: LoadSpec) -> None:
        path = self.path_of(load_spec)
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            return
        if self._local:
            self._remove_empty_parents(path)

    def _remove_empty_parents(self, path: str) -> None:
        """A local folder tree would otherwise keep one empty folder per deleted segment."""
        parent = posixpath.dirname(path)
        with contextlib.suppress(OSError):
            while parent.startswith(self.base + "/"):
                os.rmdir(parent)
                parent = posixpath.dirname(parent)

    def delete_prefix(self, key_prefix: str) -> int:
        root = self._path_of_key(key_prefix)
        info = self.fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            return 0
        if info.type == pafs.FileType.File:
            self.fs.delete_file(root)
            return 1
        count = sum(1 for f in self.fs.get_file_info(pafs.FileSelector(root, recursive=True)) if f.is_file)
        self.fs.delete_dir(root)
        if self._local:
            self._remove_empty_parents(root)
        return count

    def list(self, key_prefix: str) -> list[LoadSpec]:
        root = self._path_of_key(key_prefix)
        info = self.fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            files = [root]
        elif info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
            files = sorted(f.path for f in self.fs.get_file_info(selector) if f.is_file)
        else:
            files = []
        return [{"type": self.load_spec_type, "path": p} for p in files if not p.endswith(TMP_SUFFIX)]
