"""Where a dataset comes from (`data.source`): each source gives its splits as arrays.

  tfds:      `data.dataset` from tensorflow-datasets (downloads unless prepared in
             `data.tfds_data_dir`).
  folder:    `data.path`, comma-separated directories or .tar/.tar.gz/.tar.xz
             archives laid out `<split>/<class>/<image>` (see `archives`), cached
             decoded (see `cache`).
  synthetic: seeded random images with a learnable class signal, for tests and smoke
             runs; `data.synthetic_num_classes` (optional field, default 10) classes.
"""

import dataclasses
import os
from collections.abc import Callable

import numpy as np
from absl import logging

from squeezenet_jax.data import archives
from squeezenet_jax.data import cache
from squeezenet_jax import errors
from squeezenet_jax.errors import UserError

SOURCES = ('tfds', 'folder', 'synthetic')
_TFDS_BATCH = 10_000  # batch_size=-1 aborts the process when split sizes are unknown
PROBE_TIMEOUT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Split:
  """One split, whole, in host memory."""

  images: np.ndarray  # (N, H, W, 3) uint8
  labels: np.ndarray  # (N,) int32


@dataclasses.dataclass(frozen=True)
class Source:
  """A source's own splits, read on demand so unrequested ones cost nothing."""

  description: str
  splits: tuple[str, ...]
  class_names: tuple[str, ...]
  read: Callable[[str], Split]


def open_source(data_config) -> Source:
  openers = {'tfds': _tfds_source, 'folder': _folder_source, 'synthetic': _synthetic_source}
  return openers[data_config.source](data_config)


# Source 'synthetic'.


# Synthetic.


def _synthetic_source(data_config) -> Source:
  num_classes = data_config.synthetic_num_classes
  patterns = _class_patterns(num_classes)
  sizes = {'train': data_config.synthetic_train_size, 'test': data_config.synthetic_eval_size}
  return Source(
      description=f'synthetic data ({num_classes} classes)',
      splits=tuple(sizes),
      class_names=tuple(f'class_{i}' for i in range(num_classes)),
      read=lambda split: _synthetic_split(patterns, sizes[split], archives.SPLITS.index(split),
                                          data_config.image_size))


def _class_patterns(num_classes: int) -> np.ndarray:
  """Per class: a colour tint and a stripe orientation/frequency (fixed seed).

  Both survive random crops and flips and global pooling, so a small CNN learns them
  in a few hundred steps, while the per-image phase and noise keep it from being
  trivial.
  """
  rng = np.random.default_rng(1234)
  tints = rng.uniform(-50, 50, (num_classes, 3))
  angles = np.pi * np.arange(num_classes) / num_classes
  frequencies = 2 * np.pi * rng.uniform(0.15, 0.45, num_classes)
  return np.concatenate([tints, angles[:, None], frequencies[:, None]], axis=1)


def _synthetic_split(patterns: np.ndarray, num_images: int, seed: int,
                     size: int) -> Split:
  """Images of the class's tinted stripes at a random phase, under per-pixel noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, len(patterns), num_images).astype(np.int32)
  tint, angle, frequency = patterns[labels, :3], patterns[labels, 3], patterns[labels, 4]
  yy, xx = np.mgrid[:size, :size].astype(np.float32)
  direction = (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
  phase = rng.uniform(0, 2 * np.pi, (num_images, 1, 1))
  stripes = 50 * np.sin(frequency[:, None, None] * direction + phase)
  noise = rng.normal(0, 20, (num_images, size, size, 3))
  images = 128 + tint[:, None, None, :] + stripes[..., None] + noise
  return Split(images=np.clip(images, 0, 255).astype(np.uint8), labels=labels)


# tensorflow-datasets.


def _tfds_source(data_config) -> Source:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  # slow import

  data_dir = os.path.expanduser(data_config.tfds_data_dir) or None
  try:
    builder = tfds.builder(data_config.dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UserError(f'tensorflow-datasets has no dataset {data_config.dataset!r}.') from e
  hint = _offline_hint(data_config)
  if not builder.is_prepared():
    check_reachable(builder.info.homepage, f'download tfds {data_config.dataset!r}', hint)
    logging.warning('tfds %s is not prepared in %s; downloading it (%s).',
                    data_config.dataset, builder.data_dir, hint)
  try:
    builder.download_and_prepare()
  except ImportError as e:  # e.g. importlib_resources, which tfds does not declare
    raise UserError(f'tensorflow-datasets lacks a dependency ({e}); '
                    'pip install -r requirements.txt.') from e
  except Exception as e:  # pylint: disable=broad-except  # network, disk, checksums...
    cause = errors.first_line(e)
    raise UserError(f'Could not download/prepare tfds {data_config.dataset!r} '
                    f'({type(e).__name__}: {cause}); {hint}.') from e
  info = builder.info
  # Split sizes are unknown only under tfds.testing.mock_data without metadata.
  splits = tuple(info.splits) or ('train', 'test')
  return Source(
      description=f'tfds {data_config.dataset} in {builder.data_dir}',
      splits=tuple(s for s in archives.SPLITS if s in splits),
      class_names=tuple(info.features[info.supervised_keys[1]].names),
      read=lambda split: _tfds_split(builder, split, data_config.image_size))


def check_reachable(url: str, purpose: str, hint: str,
                    timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
  """One HEAD request (no retries) to the dataset's host, so that a machine without
  network fails in seconds with what to do, not after minutes of download retries.
  Any HTTP answer counts as reachable; proxies from the environment are honoured."""
  import requests  # pylint: disable=g-import-not-at-top  # a tfds dependency

  try:
    requests.head(url, timeout=timeout, allow_redirects=False)
  except requests.RequestException as e:
    raise UserError(f'Cannot reach {url} to {purpose} ({type(e).__name__}); {hint}.') from None


def _offline_hint(data_config) -> str:
  return ('offline, use --config.data.source=folder --config.data.path=DIR_OR_ARCHIVE, '
          f'or pre-download with tensorflow-datasets into data.tfds_data_dir '
          f'(`tfds build {data_config.dataset} --data_dir=DIR`)')


def _tfds_split(builder, split: str, image_size: int) -> Split:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  dataset = builder.as_dataset(split=split, batch_size=_TFDS_BATCH, as_supervised=True)
  batches = list(tfds.as_numpy(dataset))
  images = np.concatenate([images for images, _ in batches])
  if images.shape[1:] != (image_size, image_size, 3):
    raise UserError(f'tfds {builder.name} {split} images are {images.shape[1:]}, expected '
                    f'({image_size}, {image_size}, 3) (data.image_size).')
  labels = np.concatenate([labels for _, labels in batches]).astype(np.int32)
  return Split(images=images.astype(np.uint8, copy=False), labels=labels)


# Folders and archives.


def _folder_source(data_config) -> Source:
  paths = [os.path.expanduser(p.strip()) for p in data_config.path.split(',') if p.strip()]
  if not paths:
    raise UserError('data.source=folder needs data.path: comma-separated directories '
                    f'or .tar/.tar.gz/.tar.xz archives laid out {archives.LAYOUT}.')
  directory = cache.cache_dir(data_config)
  per_path = [cache.cached_folder(p, data_config.image_size, directory) for p in paths]
  names = [s for s in archives.SPLITS if any(s in parts for parts in per_path)]
  merged = {s: _merge([parts[s] for parts in per_path if s in parts]) for s in names}
  class_names = _common_class_names(merged)
  return Source(
      description=f'folder {data_config.path}',
      splits=tuple(names),
      class_names=class_names,
      read=lambda split: Split(images=merged[split].images, labels=merged[split].labels))


def _merge(parts: list[archives.Part]) -> archives.Part:
  """One split from several paths: union of classes, sorted by class then path."""
  if len(parts) == 1:
    return parts[0]
  class_names = tuple(sorted({c for part in parts for c in part.class_names}))
  index = {c: i for i, c in enumerate(class_names)}
  labels = np.concatenate([
      np.array([index[c] for c in part.class_names], np.int32)[part.labels] for part in parts])
  order = np.argsort(labels, kind='stable')
  images = np.concatenate([part.images for part in parts])
  return archives.Part(images=images[order], labels=labels[order], class_names=class_names)


def _common_class_names(parts: dict[str, archives.Part]) -> tuple[str, ...]:
  (first, part), *others = parts.items()
  for name, other in others:
    if other.class_names != part.class_names:
      raise UserError(
          f'Class folders differ between splits: {first} has {", ".join(part.class_names)}; '
          f'{name} has {", ".join(other.class_names)}.')
  return part.class_names
