"""Run records: one record.json per run, written atomically, gathered into pandas."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from tnbench.files import share
from tnbench.pipeline.failpoints import failpoint

RECORD = "record.json"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the record."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        failpoint(f"write:{path.name}", str(path))
        share(tmp)  # mkstemp makes 0600; records are meant to be shared
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(data), f, indent=2, sort_keys=False, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    path = Path(run_dir) / RECORD
    write_json_atomic(path, record)
    return path


def get_path(d: Any, path: str) -> Any:
    """`d["a"]["b"]` for path "a.b"; None where any step is missing."""
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def find_records(root: Path) -> list[Path]:
    return sorted(Path(root).rglob(RECORD))


def read_records(root: Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """All parseable records under `root`, and (path, reason) for those that are not."""
    good, bad = [], []
    for path in find_records(root):
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict) or "status" not in rec:
                raise ValueError("not a tnbench record")
        except (OSError, ValueError) as e:
            bad.append((path, str(e).splitlines()[0] if str(e) else type(e).__name__))
            continue
        rec["run_dir"] = str(path.parent)
        good.append(rec)
    return good, bad
