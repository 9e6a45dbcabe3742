"""What a person sees while a job runs: one live rich line per stage, one kept line per epoch.

Training (a Lightning progress bar):
    pretrain  epoch 2/3  ━━━━━━━━━━━━━━━━━━━━  loss 0.412  acc 85.1%  0:00:12 < 0:00:05
and when an epoch's test pass is done, above it:
    pretrain  epoch 2/3  loss 0.4120  train acc 85.10%  test acc 86.02%  6.1 s
Compression (any method, through tnbench.methods.base.observe_layers):
    compress  ━━━━━━━━━━━━━━━━━━━━  5/13 layers  features.10  0:01:12 < 0:02:00
The stretches between them (FLOP counts and speed timings, a budget's search), a `status_line`:
    measure   ━━━━━━━━━━━━━━━━━━━━  1/3          dense model: timing batch 1  0:00:04 < 0:00:06
    budget    ━━━━━━━━━━━━━━━━━━━━  7 settings tried  best so far norm_loss=0.3125 gives 4.12x ...
Every column is fixed-width text that never wraps, so a narrow terminal cuts the bar, not the
numbers. Off a terminal (logs, CI) rich prints each live line once, finished; the kept epoch
lines are plain lines.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from tnbench.reporting.console import console

REFRESH_S = 0.5  # how often the live line reads the running loss (a device sync on GPU)


def _text(fmt: str, width: int | None = None) -> TextColumn:
    return TextColumn(fmt, table_column=Column(no_wrap=True, min_width=width))


def _progress(*middle: ProgressColumn, transient: bool = False) -> Progress:
    return Progress(_text("[bold]{task.description}", 8), *middle, TimeElapsedColumn(), _text("<"),
                    TimeRemainingColumn(), console=console, transient=transient, refresh_per_second=4)


class TrainingProgress(ProgressBar):
    """One live line for a whole fit (the remaining time is the stage's), a transient one for a
    test pass alone. The stage name, loss and accuracy come from the Classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_read = 0.0
        self._epoch_t0 = 0.0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._task = None, None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        batches = self.total_train_batches
        batches = int(batches) if math.isfinite(batches) else 0
        self._progress = _progress(_text("epoch {task.fields[epoch]}", 9), BarColumn(bar_width=20),
                                   _text("loss {task.fields[loss]}", 10), _text("acc {task.fields[acc]}", 10))
        self._progress.start()
        self._task = self._progress.add_task(
            getattr(pl_module, "stage_name", "train"), total=(trainer.max_epochs or 1) * batches or None,
            completed=trainer.current_epoch * batches, epoch="", loss="-", acc="-")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_t0 = time.perf_counter()
        if self._task is not None:
            self._progress.update(self._task, epoch=f"{trainer.current_epoch + 1}/{trainer.max_epochs}",
                                  loss="-", acc="-")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._task is None:
            return
        fields: dict[str, str] = {}
        now = time.perf_counter()
        if now - self._last_read >= REFRESH_S and hasattr(pl_module, "running_metrics"):
            self._last_read = now
            loss, acc = pl_module.running_metrics()
            fields = {"loss": f"{loss:.3f}", "acc": f"{acc:.1f}%"}
        self._progress.update(self._task, advance=1, **fields)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking or self._task is not None or not console.is_terminal:
            return
        # a test pass alone (before and after compression): a transient line
        total = sum(trainer.num_val_batches) if isinstance(trainer.num_val_batches, list) else trainer.num_val_batches
        self._progress = _progress(BarColumn(bar_width=20), transient=True)
        self._progress.start()
        stage = getattr(pl_module, "stage_name", "test")
        self._task = self._progress.add_task(f"{stage} test", total=int(total) if math.isfinite(total) else None)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._task is not None and trainer.state.fn == "validate":
            self._progress.update(self._task, advance=1)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._task is None or trainer.sanity_checking:
            return
        if trainer.state.fn == "validate":
            self._stop()
            return
        row = (getattr(pl_module, "curve", None) or [{}])[-1]
        if row.get("epoch") == trainer.current_epoch + 1:  # this epoch's numbers (tnbench Classifier)
            self._progress.update(self._task, loss=f"{row['train_loss_epoch']:.3f}", acc=f"{row['train_acc']:.1f}%")
            self.print(f"[bold]{pl_module.stage_name:<8}[/] epoch {row['epoch']}/{trainer.max_epochs}  "
                       f"loss {row['train_loss_epoch']:.4f}  train acc {row['train_acc']:.2f}%  "
                       f"test acc {row['val_acc']:.2f}%  {time.perf_counter() - self._epoch_t0:.1f} s")

    def print(self, *args: Any, **kwargs: Any) -> None:
        (self._progress.console if self._progress is not None else console).print(*args, **kwargs)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop()


class LayerProgress:
    """The compress stage's live line, fed by tnbench.methods.base: the layers a method selected
    and each one it has replaced or left dense. Methods that do not go through `replace_module`
    or `left_dense` for every layer still show the elapsed time, and the line completes when
    compression returns."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("compress", total=None, layers="", layer="")
        self.names: list[str] = []
        self.finished: set[str] = set()

    def _show(self) -> None:
        total = len(self.names) or None
        self.progress.update(self.task, total=total, completed=len(self.finished),
                             layers=f"{len(self.finished)}/{len(self.names)} layers")

    def selected(self, names: list[str]) -> None:
        self.names = list(names)
        self._show()

    def done(self, name: str) -> None:
        self.finished.add(name)
        self.progress.update(self.task, layer=name)
        self._show()

    def complete(self) -> None:
        self.finished.update(self.names)
        self._show()


@contextmanager
def compress_progress(enabled: bool = True) -> Iterator[None]:
    """Show the progress of whatever compression runs inside (per layer)."""
    from tnbench.methods.base import observe_layers

    if not enabled:
        yield
        return
    progress = _progress(BarColumn(bar_width=20), _text("{task.fields[layers]}", 12), _text("{task.fields[layer]}"))
    layers = LayerProgress(progress)
    progress.start()
    try:
        with observe_layers(layers):
            yield
        layers.complete()
    finally:
        progress.stop()


class StatusLine:
    """A `status_line` as the code running under it sees it; every call does nothing when the
    line is off (trainer.progress=false, or not rank zero)."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self.progress, self.task = progress, task

    def show(self, detail: str, count: str | None = None, completed: int | None = None) -> None:
        """What runs now (`detail`), how far along (`count`, and `completed` steps for the bar)."""
        if self.progress is None:
            return
        fields = {"detail": detail, **({"count": count} if count is not None else {})}
        self.progress.update(self.task, completed=completed, **fields)

    def finish(self, detail: str, count: str | None = None) -> None:
        """What came out: the bar completes and the line keeps `detail` (off a terminal, the one
        line printed)."""
        if self.progress is None:
            return
        done = max(int(self.progress.tasks[0].completed), int(self.progress.tasks[0].total or 0), 1)
        self.progress.update(self.task, total=done, completed=done)
        self.show(detail, count)


@contextmanager
def status_line(name: str, total: int | None = None, enabled: bool = True) -> Iterator[StatusLine]:
    """One live line named `name` for a stretch of `total` steps (None: not known ahead, the bar
    pulses), with the elapsed time; the code inside updates it through the StatusLine."""
    if not enabled:
        yield StatusLine()
        return
    progress = _progress(BarColumn(bar_width=20), _text("{task.fields[count]}", 12), _text("{task.fields[detail]}"))
    line = StatusLine(progress, progress.add_task(name, total=total, count="", detail=""))
    progress.start()
    try:
        yield line
    finally:
        progress.stop()
