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

from squeezenet_jax.data import archives
from squeezenet_jax.data import sources
from squeezenet_jax.errors import UserError

# What each data.* field does to a trained run's modes (eval, export, compress,
# predict). SCORED fields choose the images scored, and may be overridden. HELD_OUT
# fields decide which training images the run held out as validation, and INPUT ones
# what the model sees: those stay the run's own, so that validation is scored on the
# images the run never trained on, prepared as in training.
SCORED_FIELDS = ('source', 'path', 'dataset', 'tfds_data_dir', 'cache_dir', 'eval_split',
                 'synthetic_eval_size')
HELD_OUT_FIELDS = ('val_size', 'split_seed', 'limit', 'synthetic_train_size')
INPUT_FIELDS = ('image_size', 'mean', 'std', 'synthetic_num_classes')


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The requested splits; labels index `class_names`."""

  splits: dict[str, sources.Split]
  class_names: tuple[str, ...]
  description: str = ''  # where the images came from, e.g. "folder test.tar.xz"

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
  return Dataset(splits=loaded, class_names=source.class_names,
                 description=source.description)


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


def check_run_override(field: str, run_value, value) -> None:
  """Refuses a `data.<field>` override of a trained run's mode that would score other
  images than it says (a leaked validation set) or feed the model other inputs."""
  if field in SCORED_FIELDS or _same(run_value, value):
    return
  if field in HELD_OUT_FIELDS:
    raise UserError(f'--config.data.{field}={value!r}: the run held out its validation '
                    f'images with data.{field}={run_value!r}, and another value would score '
                    'images it trained on; leave the override out')
  raise UserError(f'--config.data.{field}={value!r}: the run was trained with data.{field}='
                  f'{run_value!r}, and its model takes its inputs so; leave the override out')


def _same(a, b) -> bool:
  if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  return a == b


def match_classes(dataset: Dataset, run_classes: Sequence[str] | None) -> Dataset:
  """`dataset` with labels indexing the run's classes (by name), or a UserError.

  Labels index the data's own class names (a folder's sorted folder names); scored
  against a model they must mean the model's classes. A subset of them, or the same
  ones in another order, is mapped by name; any other name is refused.
  """
  if run_classes is None or tuple(dataset.class_names) == tuple(run_classes):
    return dataset
  unknown = [c for c in dataset.class_names if c not in run_classes]
  if unknown:
    raise UserError(f'the data has class(es) {", ".join(unknown)} that the run was not '
                    f'trained on; its classes are {", ".join(run_classes)} (classes.json): '
                    'name the class folders as in training')
  index = np.array([list(run_classes).index(c) for c in dataset.class_names], np.int32)
  logging.info('Mapped the data\'s %d class(es) to the run\'s %d by name.',
               len(dataset.class_names), len(run_classes))
  return Dataset(splits={name: sources.Split(images=split.images, labels=index[split.labels])
                         for name, split in dataset.splits.items()},
                 class_names=tuple(run_classes), description=dataset.description)


# Splitting: validation hold-out and limit.


def _check_split_names(splits: Sequence[str]) -> None:
  unknown = [s for s in splits if s not in archives.SPLITS]
  if unknown:
    raise UserError(f'Unknown split(s) {unknown}; splits are {", ".join(archives.SPLITS)}.')


def _available(source: sources.Source) -> tuple[str, ...]:
  """A source's splits plus 'validation' where it can be held out of 'train'."""
  derivable = ('validation',) if 'train' in source.splits else ()
  return tuple(s for s in archives.SPLITS if s in source.splits + derivable)


def _check_available(splits: Sequence[str], available: Sequence[str], where: str) -> None:
  missing = [s for s in splits if s not in available]
  if missing:
    raise UserError(f'Split(s) {", ".join(missing)} not in {where}; available: '
                    f'{", ".join(available) or "none"}.')


def _derive_splits(source: sources.Source, splits: tuple[str, ...],
                   data_config) -> dict[str, sources.Split]:
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
