"""The Lightning DataModule serving a TensorData from device memory."""
from __future__ import annotations

from typing import Optional

import lightning

from tnbench.data.batching import InMemoryLoader
from tnbench.data.tensors import TensorData


class InMemoryDataModule(lightning.LightningDataModule):
    """Serves a TensorData from device memory to a Lightning Trainer.

    Lightning's validation and test both use the *test* split (unshuffled, unaugmented): the
    compression papers this benchmark reproduces report test accuracy. A validation split carved
    from the training set (`dataset.val_split`) is served apart (`holdout_dataloader`), for
    model selection without looking at the test split.
    """

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        eval_batch_size: int = 1024,
        seed: int = 0,
        channels_last: bool = False,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.channels_last = channels_last
        self.drop_last = drop_last
        self._train_loader: Optional[InMemoryLoader] = None

    def setup(self, stage: Optional[str] = None) -> None:
        """Move the tensors to the trainer's device, so batches are born there."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            device = trainer.strategy.root_device
            if self.data.train_x.device != device:
                self.data = self.data.to(device)
                self._train_loader = None

    def reseed(self, seed: int) -> None:
        """A new shuffle/augmentation stream, e.g. for retraining after compression."""
        self.seed = seed
        self._train_loader = None

    def _trainer_epoch(self) -> Optional[int]:
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else int(trainer.current_epoch)

    def _eval_loader(self) -> InMemoryLoader:
        d = self.data
        return InMemoryLoader(
            d.test_x, d.test_y, self.eval_batch_size, shuffle=False, augment=False,
            mean=d.mean, std=d.std, seed=self.seed, channels_last=self.channels_last,
        )

    def train_dataloader(self) -> InMemoryLoader:
        # One instance for the whole fit; its shuffle follows trainer.current_epoch (see epoch_fn).
        if self._train_loader is None:
            d = self.data
            self._train_loader = InMemoryLoader(
                d.train_x, d.train_y, self.batch_size, shuffle=True, drop_last=self.drop_last,
                augment=d.augment, mean=d.mean, std=d.std, seed=self.seed, channels_last=self.channels_last,
                epoch_fn=self._trainer_epoch,
            )
        return self._train_loader

    def holdout_dataloader(self) -> Optional[InMemoryLoader]:
        """The validation split carved from the training set (`dataset.val_split`), unshuffled and
        unaugmented; None without one. Lightning never sees it: model selection reads it
        (tnbench.pipeline.selection)."""
        d = self.data
        if d.val_x is None or d.val_y is None:
            return None
        return InMemoryLoader(d.val_x, d.val_y, self.eval_batch_size, shuffle=False, augment=False, mean=d.mean,
                              std=d.std, seed=self.seed, channels_last=self.channels_last)

    def statistics_dataloader(self) -> InMemoryLoader:
        """The training split, unshuffled and unaugmented, in evaluation batches: what BatchNorm
        statistics are recomputed over (`pipeline.bn_recalibration`)."""
        d = self.data
        return InMemoryLoader(d.train_x, d.train_y, self.eval_batch_size, shuffle=False, augment=False, mean=d.mean,
                              std=d.std, seed=self.seed, channels_last=self.channels_last)

    def val_dataloader(self) -> InMemoryLoader:
        return self._eval_loader()

    def test_dataloader(self) -> InMemoryLoader:
        return self._eval_loader()
