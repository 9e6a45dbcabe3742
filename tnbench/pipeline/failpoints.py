"""Named failpoints: where the kill tests (and the fault-campaign benchmark) crash a run.

One facility, in the manner of etcd's gofail: the code calls `failpoint(name)` at a few
places; a point is armed by the environment variable TNBENCH_FAILPOINT=<name>, and an armed
point kills the process with SIGKILL (nothing is flushed, exactly like a crash). Unarmed, a
point costs one dictionary lookup. The points:

  <stage>:step:<n>    after optimizer step n (global step) of a training stage
  <stage>:epoch:<n>   after epoch n of a training stage has been checkpointed
  compress:done       after compression, before retraining starts
with <stage> one of pretrain, retrain.
"""
from __future__ import annotations

import os
import re
import signal

ENV = "TNBENCH_FAILPOINT"
POINTS = (r"(pretrain|retrain):step:\d+", r"(pretrain|retrain):epoch:\d+", r"compress:done")


def is_point(name: str) -> bool:
    return any(re.fullmatch(p, name) for p in POINTS)


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if `name` is the armed point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
