"""`python -m tnbench.export RUN_DIR --format torch-export|onnx`: a run's saved compressed model as
an exported program or an ONNX file, checked against the reloaded model (tnbench.artifacts.programs)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

FORMATS = ("torch-export", "onnx")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tnbench.export", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a run directory (results/runs/<run_id>) holding model.safetensors")
    ap.add_argument("--format", default="torch-export", help=f"one of {', '.join(FORMATS)} (default torch-export)")
    ap.add_argument("--images", type=int, default=8, help="test images the export is checked on (default 8)")
    args = ap.parse_args(argv)
    if args.format not in FORMATS:
        print(f"error: --format must be one of {', '.join(FORMATS)}; got {args.format!r}", file=sys.stderr)
        return 2
    if args.images < 1:
        print(f"error: --images must be >= 1, got {args.images}", file=sys.stderr)
        return 2
    if args.format == "onnx" and not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript")):
        print("error: --format onnx needs the onnx and onnxscript packages: pip install 'tnbench[export]'",
              file=sys.stderr)
        return 2
    record_file = args.run_dir / "record.json"
    if not record_file.is_file():
        print(f"error: {args.run_dir} is not a run directory (no record.json)", file=sys.stderr)
        return 2
    from tnbench.artifacts.programs import export
    from tnbench.artifacts.store import read_spec
    from tnbench.errors import BAD_INPUT
    from tnbench.reporting.records import write_record

    record = json.loads(record_file.read_text())
    try:
        read_spec(args.run_dir)  # a record from before models were saved: one line, before any work
        result = export(args.run_dir, args.format, record, args.images)
    except BAD_INPUT as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    record["export"] = {**(record.get("export") or {}), args.format: result}
    write_record(args.run_dir, record)
    print(f"{args.format}: {result['file']} (batch {result['batch']}), max abs difference from the reloaded model "
          f"on {result['images']} test images: {result['max_abs_diff']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
