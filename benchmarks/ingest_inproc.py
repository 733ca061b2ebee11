"""One in-process ``run_ingestion`` over the benchmark's wikiticker files, for A/B runs of the ingest code.

Prints one JSON line: CPU seconds (user, sys) of this process over the run, wall seconds, peak RSS,
segment count and bytes. ``--src`` puts another checkout's ``src`` first on ``sys.path`` (the base of
an A/B); run base and branch alternately in fresh processes so both see the same machine load.

Usage: python benchmarks/ingest_inproc.py [--src DIR] [--rollup] [--files N] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=str(HERE.parent / "src"))
    ap.add_argument("--rollup", action="store_true")
    ap.add_argument("--files", type=int, default=2, help="how many of the two 500k-row files")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", default="", help="copy the output here")
    args = ap.parse_args()
    sys.path.insert(0, args.src)
    import overlord  # first, from --src (the benchmark module puts this checkout on the path)
    from overlord.clock import ManualClock
    from overlord.ingest.pipeline import run_ingestion
    from overlord.ingest.spec import validate_index_spec

    sys.path.insert(0, str(HERE))
    from ingest import make_files, spec

    files = make_files(args.rows)[: args.files]
    body = spec("wiki", files, 1, rollup=args.rollup)
    body["type"] = "index"
    body["spec"]["ioConfig"]["type"] = "index"
    body["spec"]["tuningConfig"] = {"type": "index"}
    index_spec = validate_index_spec(body, allowed_dirs=[f.parent for f in files])
    out = Path(tempfile.mkdtemp(prefix="ingest-inproc-"))
    try:
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        res = run_ingestion(index_spec, out_dir=out, version="v1", clock=ManualClock(), log=logging.getLogger("x"))
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)
        print(
            json.dumps(
                {
                    "cpu": round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 3),
                    "sys": round(r1.ru_stime - r0.ru_stime, 3),
                    "wall": round(wall, 3),
                    "rss_mib": r1.ru_maxrss // 1024,
                    "segments": len(res.segments),
                    "bytes": sum(s.size for s in res.segments),
                    "src": str(Path(overlord.__file__).parents[1]),
                }
            )
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
