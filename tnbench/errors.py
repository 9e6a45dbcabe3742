"""Every exception a user can see, in one place.

The command line shows the project's own input errors (`BAD_INPUT`) as one line and exits 2,
before any work where possible. Everything else is an internal error and keeps its traceback,
on stderr and in the run's record; `Diverged` is an outcome, not an error of the tool.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input; the message is one line naming the field and what is allowed."""


class UnknownEntry(ConfigError):
    """A name that no entry of a registry (dataset, model, method) carries."""


class DataError(ConfigError):
    """A dataset's files are missing, truncated, or not what they claim to be."""


class DataMissing(DataError):
    """A dataset's files are not on disk (and could not be downloaded)."""


class DataCorrupt(DataError):
    """A dataset's files are on disk but unusable (truncated, bad checksum, wrong header)."""


class CheckpointError(ValueError):
    """A checkpoint or cache entry that cannot be used; one-line message naming the file."""


class Diverged(RuntimeError):
    """Non-finite loss or weights: the run ends with status `diverged` and where it happened."""

    def __init__(self, stage: str, step: int, message: str) -> None:
        super().__init__(f"diverged in {stage} at step {step}: {message}")
        self.stage, self.step = stage, step


# Shown as one line without a traceback. A plain ValueError is *not* here: raised by our own
# code it is a bug, and its traceback is what fixes it.
BAD_INPUT: tuple[type[BaseException], ...] = (ConfigError, CheckpointError)
