"""The mode of the files tnbench writes: what the user's umask gives a new file (0644 under the
usual 022), as `open()` would, so records, cache entries and saved models on a shared filesystem
(a Slurm sweep's results dir) can be read by the people and jobs that may read the folder.

The atomic writers create their temp files with `tempfile.mkstemp` (always 0600) and safetensors
writes 0600 too; each calls `share` on the finished file before it is renamed into place.
"""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def new_file_mode() -> int:
    """0666 less the process's umask (read without changing it for longer than the call)."""
    with _lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def share(path: str | os.PathLike[str]) -> None:
    """Give a file tnbench wrote the mode a plain `open()` would have given it."""
    os.chmod(path, new_file_mode())
