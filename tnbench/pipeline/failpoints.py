"""Named failpoints: where the fault tests (and the fault-campaign benchmark) break a run.

One facility, in the manner of etcd's gofail: the code calls `failpoint(name)` at a few
places; a point is armed by the environment variable TNBENCH_FAILPOINT=<name>[=<action>].
Unarmed, a point costs one dictionary lookup. The actions:

  kill        (the default) SIGKILL: nothing is flushed, exactly like a crash
  sigint      SIGINT to this process, as a Ctrl-C in the terminal would send it
  valueerror  raise ValueError, as an internal bug would
  enospc      raise OSError(ENOSPC), as a full disk would
The points:

  <stage>:step:<n>    after optimizer step n (global step) of a training stage
  <stage>:epoch:<n>   after epoch n of a training stage has been checkpointed
  compress:done       after compression, before retraining starts
  write:<file name>   in an atomic write of that file (e.g. write:record.json), its temp file open
with <stage> one of pretrain, retrain.
"""
from __future__ import annotations

import errno
import os
import re
import signal

ENV = "TNBENCH_FAILPOINT"
POINTS = (r"(pretrain|retrain):step:\d+", r"(pretrain|retrain):epoch:\d+", r"compress:done", r"write:[^/=]+")
ACTIONS = ("kill", "sigint", "valueerror", "enospc")


def is_point(name: str) -> bool:
    return any(re.fullmatch(p, name) for p in POINTS)


def failpoint(name: str, path: str | None = None) -> None:
    """Act if `name` is the armed point (`path`: the file an `enospc` names)."""
    armed = os.environ.get(ENV)
    if not armed:
        return
    point, _, action = armed.partition("=")
    if point != name:
        return
    if action in ("", "kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
    elif action == "valueerror":
        raise ValueError(f"failpoint {name}: an internal error")
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    else:
        raise ValueError(f"{ENV}={armed}: unknown action {action!r}; allowed: {', '.join(ACTIONS)}")
