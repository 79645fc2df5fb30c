"""A dataset's splits as host numpy arrays, loaded whole and once.

CIFAR-10 is small enough (150 MB as uint8) to live in device memory, so the trainer
takes the arrays from here, puts them on the device and does everything else there
(shuffling, augmentation, batching).

Where the source has no 'validation' split, `data.val_size` images are held out of
'train' by a permutation seeded with `data.split_seed`, before `data.limit` trims
train, so validation never depends on the limit.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
from absl import logging

from squeezenet_jax.data import sources
from squeezenet_jax.errors import UserError

SPLITS = sources.SPLITS
Split = sources.Split


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The requested splits; labels index `class_names`."""

  splits: dict[str, sources.Split]
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def load_dataset(data_config, splits: Sequence[str] = ('train', 'validation')) -> Dataset:
  """Returns the requested splits of the dataset `data_config` describes."""
  _check_split_names(splits)
  source = sources.open_source(data_config)
  _check_available(splits, _available(source), source.description)
  loaded = _derive_splits(source, tuple(splits), data_config)
  for name, split in loaded.items():
    logging.info('Loaded %s: %d images of shape %s from %s.', name, len(split.labels),
                 split.images.shape[1:], source.description)
  return Dataset(splits=loaded, class_names=source.class_names)


def available_splits(data_config) -> tuple[str, ...]:
  """Split names `load_dataset` can return for `data_config` (validation included)."""
  return _available(sources.open_source(data_config))


def resolve_eval_split(data_config, available: Sequence[str] | None = None) -> str:
  """The split `--mode=eval` scores: data.eval_split, else test, else validation."""
  if available is None:
    available = available_splits(data_config)
  split = data_config.eval_split or ('test' if 'test' in available else 'validation')
  if split not in available:
    raise UserError(f'No {split!r} split to evaluate (data.eval_split); available: '
                    f'{", ".join(available) or "none"}.')
  return split


# Splitting: validation hold-out and limit.


def _check_split_names(splits: Sequence[str]) -> None:
  unknown = [s for s in splits if s not in SPLITS]
  if unknown:
    raise UserError(f'Unknown split(s) {unknown}; splits are {", ".join(SPLITS)}.')


def _available(source: sources.Source) -> tuple[str, ...]:
  """A source's splits plus 'validation' where it can be held out of 'train'."""
  derivable = ('validation',) if 'train' in source.splits else ()
  return tuple(s for s in SPLITS if s in source.splits + derivable)


def _check_available(splits: Sequence[str], available: Sequence[str], where: str) -> None:
  missing = [s for s in splits if s not in available]
  if missing:
    raise UserError(f'Split(s) {", ".join(missing)} not in {where}; available: '
                    f'{", ".join(available) or "none"}.')


def _derive_splits(source: sources.Source, splits: tuple[str, ...], data_config) -> dict[str, sources.Split]:
  """Reads the requested splits, holding validation out of train where needed."""
  native = {s: source.read(s) for s in splits if s in source.splits and s != 'train'}
  carve = 'validation' not in source.splits
  if 'train' not in splits and not (carve and 'validation' in splits):
    return native
  train = source.read('train')
  order = _mixed_order(train.labels, data_config.split_seed)
  if carve:
    num_val = _check_val_size(data_config.val_size, len(order), 'validation' in splits)
    native['validation'] = _take(train, order[:num_val])
    order = order[num_val:]
  native['train'] = _take(train, _limit(order, data_config.limit))
  return {s: native[s] for s in splits}


def _check_val_size(val_size: int, num_train: int, validation_wanted: bool) -> int:
  if not 0 <= val_size < num_train or (validation_wanted and val_size == 0):
    raise UserError(f'data.val_size={val_size} must be between 1 and {num_train - 1}: '
                    'the images held out of train as validation.')
  return val_size


def _limit(order: np.ndarray, limit: int) -> np.ndarray:
  if limit < 0:
    raise UserError(f'data.limit={limit} must be >= 0 (0: all training images).')
  return order[:limit] if limit else order


def _mixed_order(labels: np.ndarray, seed: int) -> np.ndarray:
  """A seeded permutation whose every prefix holds each class in proportion.

  Taking a prefix as validation (or as a limited train set) then gives a stratified
  sample, identical whatever is done with the rest.
  """
  perm = np.random.default_rng(seed).permutation(len(labels))
  shuffled = labels[perm]
  counts = np.bincount(shuffled)
  by_class = np.argsort(shuffled, kind='stable')
  rank = np.empty(len(labels), np.int64)
  rank[by_class] = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
  return perm[np.argsort((rank + 0.5) / counts[shuffled], kind='stable')]


def _take(split: sources.Split, indices: np.ndarray) -> sources.Split:
  return sources.Split(images=split.images[indices], labels=split.labels[indices])
