"""Write a deterministic wikiticker-like newline-delimited JSON file (gzip when --out ends in .gz)."""

from __future__ import annotations

import argparse
from pathlib import Path

from overlord.ingest.wikiticker import write_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gzip", action="store_true", help="gzip even without a .gz suffix")
    args = parser.parse_args()
    path = write_file(args.out, args.rows, seed=args.seed, gzip_output=True if args.gzip else None)
    print(f"wrote {args.rows} rows to {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
