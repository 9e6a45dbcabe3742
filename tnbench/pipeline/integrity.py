"""Files a run reads back (state, record, checkpoints, cache entries) are checked; one that does
not verify is set aside, never deleted and never used: renamed `<name>.corrupt-<n>` with one
warning line naming it and why, and the stage it belonged to is done again. Temp files left by
writes a kill interrupted are removed when the next attempt starts."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# what the atomic writers leave behind when killed: `.<name>.<random>.tmp` (records, state,
# cache entries, and the entry's `.tmp.sha256`) and `<stage>-last.tmp` (epoch checkpoints)
TEMP_PATTERNS = (".*.tmp", ".*.tmp.sha256", "*-last.tmp")


def set_aside(path: Path, why: str, then: str = "") -> Path:
    """Rename `path` (and its `.sha256` sidecar, if any) to `<name>.corrupt-<n>`, the first
    free n, and say so in one warning line. Returns the new path."""
    path = Path(path)
    n = 1
    while path.with_name(f"{path.name}.corrupt-{n}").exists():
        n += 1
    target = path.with_name(f"{path.name}.corrupt-{n}")
    path.replace(target)
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.exists():
        sidecar.replace(sidecar.with_name(f"{sidecar.name}.corrupt-{n}"))
    log.warning("set aside %s (%s) as %s%s", path, why, target.name, f"; {then}" if then else "")
    return target


def remove_temps(directory: Path, prefix: str = "") -> list[Path]:
    """Remove the temp files of interrupted writes in `directory` (only those whose name starts
    with `.`+`prefix` or `prefix`, when given: the files of one cache entry)."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for pattern in TEMP_PATTERNS:
        for p in directory.glob(pattern):
            if p.is_file() and (not prefix or p.name.startswith((f".{prefix}", prefix))):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def read_json(path: Path, check: Callable[[Any], str | None], then: str = "") -> Any:
    """The JSON document at `path` if it parses and `check(data)` finds nothing wrong (returns
    None); otherwise the file is set aside and None returned. A missing file is None."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        why = check(data)
    except (OSError, ValueError) as e:  # unreadable or not JSON (an empty file included)
        why = f"not readable JSON: {(str(e).splitlines() or [type(e).__name__])[0]}"
    if why is None:
        return data
    set_aside(path, why, then)
    return None


def state_problem(state: Any) -> str | None:
    """What is wrong with a run's state.json (tnbench.pipeline.resume), or None."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not an object"
    attempts = state.get("attempts", 0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
        return f"attempts={attempts!r} is not a count"
    if not isinstance(state.get("wandb_run_id"), (str, type(None))):
        return "wandb_run_id is not a string"
    done = state.get("pretrain")
    if done is not None:
        if not isinstance(done, dict):
            return "pretrain is not an object"
        for key, kind in (("weights", str), ("record", dict)):
            if not isinstance(done.get(key), kind):
                return f"pretrain.{key} is missing or not a {kind.__name__}"
    return None


def record_problem(record: Any) -> str | None:
    """What is wrong with a record.json, or None."""
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not an object"
    if not isinstance(record.get("status"), str):
        return "no status"
    return None


def lightning_checkpoint_problem(path: Path, expected_keys: set[str], stage: str) -> str | None:
    """What would make Lightning refuse (or misuse) the epoch checkpoint at `path` to resume
    `stage` of a model whose state-dict keys are `expected_keys`, or None."""
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a zip, unpicklable: many exception types
        return f"cannot be loaded: {(str(e).strip().splitlines() or [type(e).__name__])[0][:160]}"
    if not isinstance(blob, dict):
        return "not a Lightning checkpoint"
    missing = [k for k in ("state_dict", "optimizer_states", "loops", "epoch") if k not in blob]
    if missing:
        return f"not a Lightning checkpoint (no {', '.join(missing)})"
    saved = (blob.get("tnbench") or {}).get("stage") if isinstance(blob.get("tnbench"), dict) else None
    if saved != stage:
        return f"a checkpoint of stage {saved!r}, not {stage!r}"
    keys = set(blob["state_dict"]) if isinstance(blob["state_dict"], dict) else set()
    if keys != expected_keys:
        odd = sorted(keys ^ expected_keys)
        return f"does not fit this model ({len(odd)} tensors differ, e.g. {odd[0] if odd else '?'})"
    return None


class CheckpointSetAside(Exception):
    """Lightning refused an epoch checkpoint while restoring it; it has been set aside and the
    run starts its stage again (tnbench.pipeline.stages.execute)."""
