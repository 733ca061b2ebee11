"""One contract for every DeepStorage: a local folder through pyarrow.fs, S3 (moto), and the in-memory twin.

Load specs differ in shape (``path`` for files, ``bucket`` and ``key`` for S3): the tests reach a
spec's location through ``where`` and point a spec elsewhere with ``at``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overlord.core.protocols import DeepStorage
from overlord.errors import InvalidInput
from overlord.storage.deep_storage import FsDeepStorage
from overlord.testing import InMemoryDeepStorage


@pytest.fixture(params=["fs", "memory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> DeepStorage:
    if request.param == "fs":
        return FsDeepStorage.from_uri(f"file://{tmp_path / 'deep'}")
    if request.param == "s3":
        from overlord.storage.s3 import S3Location
        from overlord.storage.s3_deep_storage import S3DeepStorage

        server = request.getfixturevalue("s3_env")
        bucket = server.new_bucket()
        return S3DeepStorage(S3Location(bucket, "druid/segments", server.endpoint, "us-east-1", path_style=True))
    return InMemoryDeepStorage()


def where(spec: dict[str, Any]) -> str:
    """A load spec's location: a file path, or an S3 object key."""
    return spec["key"] if spec["type"] == "s3_zip" else spec["path"]


def at(spec: dict[str, Any], location: Any) -> dict[str, Any]:
    """The same kind of load spec, pointing at ``location`` instead."""
    return {**spec, "key" if spec["type"] == "s3_zip" else "path": location}


def parquet_bytes(n: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(n))}), buf)
    return buf.getvalue()


def read(storage: DeepStorage, spec: dict[str, Any]) -> bytes:
    with storage.open(spec) as f:
        return f.read()


def test_is_a_deep_storage(storage: DeepStorage) -> None:
    assert isinstance(storage, DeepStorage)


def test_write_from_stream_and_path_reads_back(storage: DeepStorage, tmp_path: Path) -> None:
    from_stream = storage.write("ds/2020/v1/0/index.parquet", io.BytesIO(parquet_bytes(3)))
    local = tmp_path / "local.parquet"
    local.write_bytes(parquet_bytes(5))
    from_path = storage.write("ds/2020/v1/1/index.parquet", str(local))
    assert from_stream["type"] == from_path["type"] and from_stream != from_path
    assert where(from_stream).endswith("ds/2020/v1/0/index.parquet")
    with storage.open(from_stream) as f:
        assert pq.read_table(f).column("x").to_pylist() == [0, 1, 2]
    with storage.open(from_path) as f:
        assert pq.read_table(f).num_rows == 5
    assert local.exists(), "writing from a path copies; the caller's file stays"
    assert storage.contains(from_stream) and storage.contains(from_path)


def test_write_replaces_and_large_files_survive(storage: DeepStorage) -> None:
    blob = os.urandom(9 << 20)  # larger than one copy chunk
    spec = storage.write("big/file", io.BytesIO(b"old"))
    assert storage.write("big/file", io.BytesIO(blob)) == spec
    assert read(storage, spec) == blob
    assert storage.list("big") == [spec]


def test_copy_makes_an_independent_file_and_refuses_outside_sources(storage: DeepStorage, tmp_path: Path) -> None:
    staged = storage.write("_staging/p/s/0/index.parquet", io.BytesIO(parquet_bytes(4)))
    final = storage.copy(staged, "ds/2020/v1/0/index.parquet")
    assert where(final).endswith("ds/2020/v1/0/index.parquet") and storage.contains(final)
    storage.delete_prefix("_staging/p")  # the staged copy goes; the final one stays whole
    with storage.open(final) as f:
        assert pq.read_table(f).num_rows == 4
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(b"secret")
    with pytest.raises(InvalidInput):
        storage.copy(at(final, str(outside)), "ds/stolen")
    assert storage.list("ds") == [final]


def test_open_missing_raises_file_not_found(storage: DeepStorage) -> None:
    spec = storage.write("a/b", io.BytesIO(b"x"))
    storage.delete(spec)
    with pytest.raises(FileNotFoundError):
        storage.open(spec)


def test_delete_and_delete_missing(storage: DeepStorage) -> None:
    keep = storage.write("ds/a/0", io.BytesIO(b"keep"))
    gone = storage.write("ds/a/1", io.BytesIO(b"gone"))
    storage.delete(gone)
    storage.delete(gone)  # missing: not an error
    assert storage.list("ds") == [keep]
    assert read(storage, keep) == b"keep"


def test_delete_prefix_removes_only_that_prefix(storage: DeepStorage) -> None:
    staged = [storage.write(f"_staging/parent/sub{i}/seg/{j}", io.BytesIO(b"s")) for i in range(2) for j in range(3)]
    other = storage.write("_staging/parent2/sub0/seg", io.BytesIO(b"o"))
    published = storage.write("ds/seg", io.BytesIO(b"p"))
    assert sorted(map(where, storage.list("_staging/parent"))) == sorted(map(where, staged))
    assert storage.delete_prefix("_staging/parent") == 6
    assert storage.list("_staging/parent") == []
    assert storage.delete_prefix("_staging/parent") == 0
    assert storage.list("_staging") == [other]
    assert storage.list("ds") == [published]


def test_list_is_sorted_and_empty_for_unknown_prefix(storage: DeepStorage) -> None:
    for name in ("c", "a", "b/x"):
        storage.write(f"p/{name}", io.BytesIO(name.encode()))
    assert [where(s).rsplit("/p/", 1)[1] for s in storage.list("p")] == ["a", "b/x", "c"]
    assert storage.list("nothing/here") == []


@pytest.mark.parametrize("key", ["", "/abs/path", "../up", "a/../../up", "a/../b", "."])
def test_keys_that_leave_the_base_are_refused(storage: DeepStorage, key: str) -> None:
    with pytest.raises(InvalidInput):
        storage.write(key, io.BytesIO(b"x"))
    with pytest.raises(InvalidInput):
        storage.delete_prefix(key)
    with pytest.raises(InvalidInput):
        storage.list(key)


def test_contains_refuses_outside_paths_wrong_types_and_dotdot(storage: DeepStorage) -> None:
    spec = storage.write("ds/seg/index.parquet", io.BytesIO(b"x"))
    base = where(spec)[: -len("/ds/seg/index.parquet")]
    refused: list[Any] = [
        at(spec, "/etc/passwd"),
        at(spec, base),
        at(spec, base + "-sibling/ds/seg/index.parquet"),
        at(spec, where(spec) + "/../../../../../etc/passwd"),
        at(spec, base + "/../etc/passwd"),
        at(spec, "ds/seg/index.parquet"),
        {**spec, "type": "hdfs"},
        at(spec, 42),
        {"type": spec["type"]},
        at(spec, ""),
        None,
        "s3://bucket/x",
        [spec],
    ]
    if spec["type"] == "s3_zip":  # S3 keys are literal: a dot segment is refused, not resolved
        refused += [{**spec, "bucket": "other-bucket"}, at(spec, base + "/ds/other/../seg/index.parquet")]
        refused += [at(spec, base + "//ds/seg/index.parquet"), at(spec, base + "/./ds/seg/index.parquet")]
    else:
        assert storage.contains(at(spec, base + "/ds/other/../seg/index.parquet"))
    assert storage.contains(spec)
    for bad in refused:
        assert not storage.contains(bad), bad
        with pytest.raises(InvalidInput):
            storage.open(bad)
        with pytest.raises(InvalidInput):
            storage.delete(bad)
    assert read(storage, spec) == b"x", "a refused delete touched nothing"


# -- local folder only: what a real filesystem adds -----------------------------------------------


def test_symlinks_cannot_escape_the_base(tmp_path: Path) -> None:
    storage = FsDeepStorage.from_uri(str(tmp_path / "deep"))
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("s")
    (tmp_path / "deep" / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "deep" / "file-link").symlink_to(secret)
    for path in ("link/secret", "file-link"):
        spec = {"type": "local", "path": str(tmp_path / "deep" / path)}
        assert not storage.contains(spec)
        with pytest.raises(InvalidInput):
            storage.delete(spec)
    with pytest.raises(InvalidInput):
        storage.write("link/new", io.BytesIO(b"x"))
    with pytest.raises(InvalidInput):
        storage.delete_prefix("link")
    assert secret.read_text() == "s" and not (outside / "new").exists()


def test_local_delete_removes_emptied_folders_and_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = FsDeepStorage.from_uri(str(tmp_path / "deep"))
    a = storage.write("ds/iv/v/0/index.parquet", io.BytesIO(b"a"))
    b = storage.write("ds/iv/v/1/index.parquet", io.BytesIO(b"b"))
    assert sorted(p.name for p in (tmp_path / "deep").rglob("*") if p.is_file()) == ["index.parquet"] * 2
    storage.delete(a)
    assert not (tmp_path / "deep" / "ds" / "iv" / "v" / "0").exists()
    storage.delete(b)
    assert list((tmp_path / "deep").iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    storage = FsDeepStorage.from_uri(str(tmp_path / "deep"))

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        storage.write("ds/seg", Broken())  # type: ignore[arg-type]
    assert [p for p in (tmp_path / "deep").rglob("*") if p.is_file()] == []
