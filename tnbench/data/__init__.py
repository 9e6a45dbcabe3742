"""Datasets held whole in (device) memory, batched without worker processes.

The benchmark datasets are small (MNIST-sized to CIFAR-sized: at most ~180 MB as uint8), so
each split lives as one uint8 tensor on the training device; batching is an index into it and
normalization/augmentation are a few batched tensor ops (tnbench.data.batching).

  DATASETS / dataset   the registry; one module per family in tnbench.data.sets registers
                       its builders, with the dataclass of its options (like methods do);
                       builders from outside: `dataset._target_` or the `tnbench.datasets`
                       entry-point group (tnbench.registry)
  load_data            a dataset by name, with seeded subsets
  tensors, batching, module   TensorData, the loader, the Lightning DataModule
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, Optional

from tnbench.config import DatasetConfig, option_names
from tnbench.data.tensors import TensorData, subset_indices
from tnbench.errors import ConfigError
from tnbench.registry import Registry

# A builder takes (data_dir, download, seed, **options) and returns the full TensorData; its
# `config_class` is the dataclass of its config section (DatasetConfig or an extension).
DatasetBuilder = Callable[..., TensorData]
DATASETS: Registry[DatasetBuilder] = Registry("dataset", "tnbench.data.sets", entry_points="tnbench.datasets",
                                              kind="a dataset builder (a callable returning TensorData)")


def dataset(name: str, config_class: type = DatasetConfig, geometry: Optional[tuple[int, int, int]] = None,
            train_examples: Optional[int] = None) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Register a builder under `name`; options of `config_class` beyond DatasetConfig's are
    passed to it as keyword arguments. `geometry` is (channels, image size, classes), for the
    up-front check to build the model without loading the data; a dataset whose geometry is
    an option has the options `channels`, `image_size`, `num_classes` instead. Likewise
    `train_examples` (the size of its training split) or the option `train_size`."""

    def add(builder: DatasetBuilder) -> DatasetBuilder:
        builder.config_class = config_class  # type: ignore[attr-defined]
        builder.geometry = geometry  # type: ignore[attr-defined]
        builder.train_examples = train_examples  # type: ignore[attr-defined]
        return DATASETS.register(name)(builder)

    return add


def geometry(section: Any) -> Optional[tuple[int, int, int]]:
    """(channels, image size, classes) of the dataset a typed config section describes, known
    without loading it; None if the dataset does not say."""
    if all(k in section for k in ("channels", "image_size", "num_classes")):
        return int(section.channels), int(section.image_size), int(section.num_classes)
    return getattr(DATASETS.resolve(section), "geometry", None)


def train_examples(section: Any) -> Optional[int]:
    """Training examples the run would have before `val_split` (after `train_subset`), known
    without loading the data; None if the dataset does not say."""
    n = section.get("train_size") or getattr(DATASETS.resolve(section), "train_examples", None)
    subset = section.get("train_subset")
    return None if n is None else min(int(n), int(subset)) if subset else int(n)


def config_class(section: Any) -> type:
    """The options dataclass of the dataset a config section names."""
    return getattr(DATASETS.resolve(section), "config_class", DatasetConfig)


def builder_options(section: Any) -> dict[str, Any]:
    """The dataset's own options (fields its schema adds to DatasetConfig) from a config section."""
    shared = set(option_names(DatasetConfig))
    return {k: section[k] for k in option_names(config_class(section)) if k not in shared}


def load_data(
    name: str,
    data_dir: str,
    download: bool = False,
    train_subset: Optional[int] = None,
    test_subset: Optional[int] = None,
    seed: int = 0,
    augment: Optional[bool] = None,
    val_split: Optional[int] = None,
    **options: Any,
) -> TensorData:
    """Load dataset ``name`` into CPU tensors.

    ``train_subset``/``test_subset`` keep a seeded random subset (None or 0: all).  ``seed`` also
    seeds the synthetic dataset.  ``augment`` overrides the dataset's default (on for CIFAR).
    ``val_split`` moves that many (seeded, random) training examples, after the subset, to a
    validation split. Remaining ``options`` go to the dataset builder.
    """
    builder = DATASETS.get(name)  # unknown names fail here, before touching the disk
    data = builder(os.path.expanduser(str(data_dir)), bool(download), seed=seed, **options)
    train = subset_indices(len(data.train_y), train_subset, seed)
    test = subset_indices(len(data.test_y), test_subset, seed)
    if train is not None:
        data = dataclasses.replace(data, train_x=data.train_x[train], train_y=data.train_y[train])
    if test is not None:
        data = dataclasses.replace(data, test_x=data.test_x[test], test_y=data.test_y[test])
    if augment is not None:
        data = dataclasses.replace(data, augment=bool(augment))
    if val_split:
        try:
            data = data.split_validation(int(val_split), seed)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return data


def load_section(section: Any, seed: int) -> TensorData:
    """The dataset a (typed) `dataset` config section describes."""
    return load_data(section.name, data_dir=section.data_dir, download=section.download,
                     train_subset=section.train_subset or None, test_subset=section.test_subset or None,
                     seed=seed, augment=section.augment, val_split=section.get("val_split") or None,
                     **builder_options(section))


__all__ = ["DATASETS", "TensorData", "builder_options", "config_class", "dataset", "geometry", "load_data",
           "load_section", "subset_indices"]
