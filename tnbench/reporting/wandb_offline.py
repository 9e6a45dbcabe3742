"""Read an offline W&B run file (`run-<id>.wandb`) back into Python, without the network.

The file is W&B's record log: a 7-byte header (":W&B", magic 0xBEE1, version) followed by
32 KiB blocks of chunks, each with a 7-byte header (CRC, length, type: full/first/middle/
last); chunks join into protobuf `Record`s. Checksums are not verified here: this reader
is for inspecting our own runs (tests, reports), not for recovering damaged files.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file (bad header)")
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block tail padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left_in_block
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            parts = [chunk]
        elif kind == MIDDLE:
            parts.append(chunk)
        elif kind == LAST:
            parts.append(chunk)
            yield b"".join(parts)
            parts = []


def _items(items: Any) -> dict[str, Any]:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def read_run(path: str | Path) -> dict[str, Any]:
    """{run: id/name/group/tags/job_type, config, history: [rows], summary, artifacts: [name, type,
    metadata, files]} of one run file;
    `path` may be the .wandb file or the offline-run directory holding it."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        path = next(path.glob("run-*.wandb"))
    out: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}, "artifacts": []}
    for payload in _payloads(path.read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out["run"] = {"id": r.run_id, "name": r.display_name, "group": r.run_group,
                          "tags": list(r.tags), "job_type": r.job_type, "project": r.project}
            out["config"].update(_items(r.config.update))
        elif kind == "config":
            out["config"].update(_items(rec.config.update))
        elif kind == "history":
            out["history"].append(_items(rec.history.item))
        elif kind == "summary":
            out["summary"].update(_items(rec.summary.update))
        elif kind == "artifact":
            a = rec.artifact
            out["artifacts"].append({"name": a.name, "type": a.type, "metadata": json.loads(a.metadata or "{}"),
                                     "files": sorted(e.path for e in a.manifest.contents)})
    return out
