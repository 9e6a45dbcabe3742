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


def umask() -> int:
    """The process's umask: from /proc/self/status (Linux 4.7+), which reads it without changing
    it; elsewhere set and put back at once, under a lock against tnbench's own callers (another
    thread creating a file in between would get 022)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """0666 less the process's umask: what `open()` gives a new file."""
    return 0o666 & ~umask()


def share(path: str | os.PathLike[str]) -> None:
    """Give a file tnbench wrote the mode a plain `open()` would have given it."""
    os.chmod(path, new_file_mode())
