"""Loads a whole image-classification dataset into host numpy arrays, once.

CIFAR-10 is small enough (150 MB as uint8) to live in device memory, so the trainer
takes the arrays from here, puts them on device and does everything else there
(shuffling, augmentation, batching).

Sources (`data.source`):
  tfds:      `data.dataset` from tensorflow-datasets (downloads unless prepared in
             `data.tfds_data_dir`).
  folder:    `data.path`, comma-separated directories or .tar/.tar.gz/.tar.xz
             archives laid out `<split>/<class>/<image>`; decoded once, then cached
             as .npz in `data.cache_dir`.
  synthetic: seeded random images with a learnable class signal, for tests and smoke
             runs; `data.synthetic_num_classes` (optional field, default 10) classes.

Where the source has no 'validation' split, `data.val_size` images are held out of
'train' by a permutation seeded with `data.split_seed`, before `data.limit` trims
train, so validation never depends on the limit.
"""

from collections.abc import Callable, Iterator, Sequence
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import lzma
import multiprocessing
import os
import pathlib
import tarfile
import tempfile
import time
import zipfile
import zlib

from absl import logging
import numpy as np
from PIL import Image

from squeezenet_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')
SOURCES = ('tfds', 'folder', 'synthetic')

_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
_DECODE_CHUNK = 2048  # images per decoding task; no worker processes for fewer
_CACHE_VERSION = 1  # bump when the cached arrays' meaning changes
_TFDS_BATCH = 10_000  # batch_size=-1 aborts the process when split sizes are unknown
# Not fork: the parent may run JAX threads. The fork server imports __main__ once.
_START_METHOD = ('forkserver' if 'forkserver' in multiprocessing.get_all_start_methods()
                 else 'spawn')
_LAYOUT = '<split>/<class>/<image> (e.g. train/cat/0001.png)'


@dataclasses.dataclass(frozen=True)
class Split:
  """One split, whole, in host memory."""

  images: np.ndarray  # (N, H, W, 3) uint8
  labels: np.ndarray  # (N,) int32


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The requested splits; labels index `class_names`."""

  splits: dict[str, Split]
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class _Source:
  """A source's own splits, read on demand so unrequested ones cost nothing."""

  description: str
  splits: tuple[str, ...]
  class_names: tuple[str, ...]
  read: Callable[[str], Split]


def load_dataset(data_config, splits: Sequence[str] = ('train', 'validation')) -> Dataset:
  """Returns the requested splits of the dataset `data_config` describes."""
  _check_split_names(splits)
  source = _open_source(data_config)
  _check_available(splits, _available(source), source.description)
  loaded = _derive_splits(source, tuple(splits), data_config)
  for name, split in loaded.items():
    logging.info('Loaded %s: %d images of shape %s from %s.', name, len(split.labels),
                 split.images.shape[1:], source.description)
  return Dataset(splits=loaded, class_names=source.class_names)


def available_splits(data_config) -> tuple[str, ...]:
  """Split names `load_dataset` can return for `data_config` (validation included)."""
  return _available(_open_source(data_config))


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


def _available(source: _Source) -> tuple[str, ...]:
  """A source's splits plus 'validation' where it can be held out of 'train'."""
  derivable = ('validation',) if 'train' in source.splits else ()
  return tuple(s for s in SPLITS if s in source.splits + derivable)


def _check_available(splits: Sequence[str], available: Sequence[str], where: str) -> None:
  missing = [s for s in splits if s not in available]
  if missing:
    raise UserError(f'Split(s) {", ".join(missing)} not in {where}; available: '
                    f'{", ".join(available) or "none"}.')


def _derive_splits(source: _Source, splits: tuple[str, ...], data_config) -> dict[str, Split]:
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


def _take(split: Split, indices: np.ndarray) -> Split:
  return Split(images=split.images[indices], labels=split.labels[indices])


def _open_source(data_config) -> _Source:
  openers = {'tfds': _tfds_source, 'folder': _folder_source, 'synthetic': _synthetic_source}
  if data_config.source not in openers:
    raise UserError(f'Unknown data.source={data_config.source!r}; use one of '
                    f'{", ".join(SOURCES)}.')
  return openers[data_config.source](data_config)


# Source 'synthetic'.


def _synthetic_source(data_config) -> _Source:
  num_classes = data_config.get('synthetic_num_classes', 10)
  patterns = _class_patterns(num_classes)
  sizes = {'train': data_config.synthetic_train_size, 'test': data_config.synthetic_eval_size}
  return _Source(
      description=f'synthetic data ({num_classes} classes)',
      splits=tuple(sizes),
      class_names=tuple(f'class_{i}' for i in range(num_classes)),
      read=lambda split: _synthetic_split(patterns, sizes[split], SPLITS.index(split),
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


# Source 'tfds'.


def _tfds_source(data_config) -> _Source:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  # slow import

  data_dir = data_config.tfds_data_dir or None
  try:
    builder = tfds.builder(data_config.dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UserError(f'tensorflow-datasets has no dataset {data_config.dataset!r}.') from e
  hint = _offline_hint(data_config)
  if not builder.is_prepared():
    logging.warning('tfds %s is not prepared in %s; downloading it (%s).',
                    data_config.dataset, builder.data_dir, hint)
  try:
    builder.download_and_prepare()
  except ImportError as e:  # e.g. importlib_resources, which tfds does not declare
    raise UserError(f'tensorflow-datasets lacks a dependency ({e}); '
                    'pip install -r requirements.txt.') from e
  except Exception as e:  # pylint: disable=broad-except  # network, disk, checksums...
    cause = str(e).splitlines()[0][:160] if str(e) else ''
    raise UserError(f'Could not download/prepare tfds {data_config.dataset!r} '
                    f'({type(e).__name__}: {cause}); {hint}.') from e
  info = builder.info
  # Split sizes are unknown only under tfds.testing.mock_data without metadata.
  splits = tuple(info.splits) or ('train', 'test')
  return _Source(
      description=f'tfds {data_config.dataset} in {builder.data_dir}',
      splits=tuple(s for s in SPLITS if s in splits),
      class_names=tuple(info.features[info.supervised_keys[1]].names),
      read=lambda split: _tfds_split(builder, split, data_config.image_size))


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


# Source 'folder'.


@dataclasses.dataclass(frozen=True)
class _Part:
  """A split from one data.path entry: labels index its own class names."""

  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]


def _folder_source(data_config) -> _Source:
  paths = [p.strip() for p in data_config.path.split(',') if p.strip()]
  if not paths:
    raise UserError('data.source=folder needs data.path: comma-separated directories '
                    f'or .tar/.tar.gz/.tar.xz archives laid out {_LAYOUT}.')
  cache_dir = _cache_dir(data_config)
  per_path = [_cached_folder(p, data_config.image_size, cache_dir) for p in paths]
  names = [s for s in SPLITS if any(s in parts for parts in per_path)]
  merged = {s: _merge([parts[s] for parts in per_path if s in parts]) for s in names}
  class_names = _common_class_names(merged)
  return _Source(
      description=f'folder {data_config.path}',
      splits=tuple(names),
      class_names=class_names,
      read=lambda split: Split(images=merged[split].images, labels=merged[split].labels))


def _merge(parts: list[_Part]) -> _Part:
  """One split from several paths: union of classes, sorted by class then path."""
  if len(parts) == 1:
    return parts[0]
  class_names = tuple(sorted({c for part in parts for c in part.class_names}))
  index = {c: i for i, c in enumerate(class_names)}
  labels = np.concatenate([
      np.array([index[c] for c in part.class_names], np.int32)[part.labels] for part in parts])
  order = np.argsort(labels, kind='stable')
  images = np.concatenate([part.images for part in parts])
  return _Part(images=images[order], labels=labels[order], class_names=class_names)


def _common_class_names(parts: dict[str, _Part]) -> tuple[str, ...]:
  (first, part), *others = parts.items()
  for name, other in others:
    if other.class_names != part.class_names:
      raise UserError(
          f'Class folders differ between splits: {first} has {", ".join(part.class_names)}; '
          f'{name} has {", ".join(other.class_names)}.')
  return part.class_names


def _cached_folder(path: str, image_size: int, cache_dir: pathlib.Path) -> dict[str, _Part]:
  """The splits under one data.path entry, decoded once and then read from the cache."""
  if not os.path.exists(path):
    raise UserError(f'data.path {path!r} does not exist.')
  name = os.path.basename(os.path.abspath(path))
  cache_file = cache_dir / f'{name}-{_cache_key(path, image_size)}.npz'
  cached = _read_cache(cache_file)
  if cached is not None:
    logging.info('Cache hit for %s: %s.', path, cache_file)
    return cached
  start = time.perf_counter()
  parts = _read_folder(path, image_size)
  logging.info('Decoded %d images from %s in %.1f s.',
               sum(len(p.labels) for p in parts.values()), path, time.perf_counter() - start)
  _write_cache(cache_file, parts)
  return parts


def _read_folder(path: str, image_size: int) -> dict[str, _Part]:
  """Decodes every image under a directory or archive laid out <split>/<class>/<image>."""
  entries = []  # (split, class, file name), in the order of `encoded`
  encoded = []  # (name for messages, file bytes)
  class_dirs = set()
  for rel_path, data in _walk(path):
    parsed = _parse_member(path, rel_path, is_dir=data is None)
    if parsed is not None and data is None:
      class_dirs.add(parsed)
    elif parsed is not None:
      entries.append(parsed)
      encoded.append((f'{path}:{rel_path}', data))
  _check_layout(path, entries, class_dirs)
  return _group_by_split(entries, _decode_all(encoded, image_size))


def _walk(path: str) -> Iterator[tuple[str, bytes | None]]:
  """(relative path, file bytes or None for a directory) under a directory or archive."""
  if os.path.isdir(path):
    yield from _walk_directory(path)
  else:
    yield from _walk_archive(path)


def _walk_directory(root: str) -> Iterator[tuple[str, bytes | None]]:
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames.sort()
    rel_dir = os.path.relpath(dirpath, root)
    for name in dirnames:
      yield os.path.normpath(os.path.join(rel_dir, name)), None
    for name in sorted(filenames):
      rel_path = os.path.normpath(os.path.join(rel_dir, name))
      if name.lower().endswith(_IMAGE_SUFFIXES):
        yield rel_path, pathlib.Path(dirpath, name).read_bytes()


def _walk_archive(path: str) -> Iterator[tuple[str, bytes | None]]:
  """One streaming pass: .xz archives cannot be read any other way cheaply."""
  try:
    with tarfile.open(path, mode='r|*') as archive:
      for member in archive:
        if member.isdir():
          yield member.name, None
        elif member.isfile() and member.name.lower().endswith(_IMAGE_SUFFIXES):
          yield member.name, archive.extractfile(member).read()
  except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as e:
    raise UserError(f'data.path {path!r} is neither a directory nor a readable '
                    f'.tar/.tar.gz/.tar.xz archive ({e}).') from e


def _parse_member(path: str, rel_path: str, is_dir: bool) -> tuple[str, ...] | None:
  """(split, class, file name) of an image, (split, class) of a class folder, else None."""
  parts = tuple(p for p in pathlib.PurePosixPath(rel_path).parts if p not in ('.', '/'))
  if not parts or any(p.startswith('.') or p == '__MACOSX' for p in parts):
    return None  # hidden files and macOS metadata
  if is_dir:
    return parts if len(parts) == 2 and parts[0] in SPLITS else None
  if len(parts) != 3:
    raise UserError(f'Image {rel_path!r} in {path} is not laid out {_LAYOUT}.')
  if parts[0] not in SPLITS:
    raise UserError(f'Image {rel_path!r} in {path}: split folder {parts[0]!r} is not one of '
                    f'{", ".join(SPLITS)}; expected {_LAYOUT}.')
  return parts


def _check_layout(path: str, entries: list[tuple[str, ...]], class_dirs: set) -> None:
  if not entries:
    raise UserError(f'No .jpg/.jpeg/.png images in {path}; expected {_LAYOUT}.')
  empty = sorted(class_dirs - {entry[:2] for entry in entries})
  if empty:
    raise UserError(f'Empty class folder(s) in {path}: '
                    f'{", ".join("/".join(d) for d in empty)}.')


def _group_by_split(entries: list[tuple[str, ...]], images: np.ndarray) -> dict[str, _Part]:
  """Per split, images sorted by class then file name, labelled by sorted class name."""
  parts = {}
  for split in SPLITS:
    members = sorted((cls, name, i) for i, (s, cls, name) in enumerate(entries) if s == split)
    if not members:
      continue
    class_names = tuple(sorted({cls for cls, _, _ in members}))
    index = {c: i for i, c in enumerate(class_names)}
    parts[split] = _Part(
        images=images[[i for _, _, i in members]],
        labels=np.array([index[cls] for cls, _, _ in members], np.int32),
        class_names=class_names)
  return parts


def _decode_all(encoded: list[tuple[str, bytes]], image_size: int) -> np.ndarray:
  """Decodes in worker processes: Pillow holds the GIL on tiny images, so threads don't help."""
  chunks = [encoded[i:i + _DECODE_CHUNK] for i in range(0, len(encoded), _DECODE_CHUNK)]
  if len(chunks) > 1:
    context = multiprocessing.get_context(_START_METHOD)
    try:
      with concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=context) as pool:
        return np.concatenate(list(pool.map(_decode_chunk, chunks, [image_size] * len(chunks))))
    except concurrent.futures.BrokenExecutor as e:
      logging.warning('Decoding in this process: worker processes failed (%s); scripts '
                      "that load data need an `if __name__ == '__main__':` guard.", e)
  return np.concatenate([_decode_chunk(chunk, image_size) for chunk in chunks])


def _decode_chunk(items: list[tuple[str, bytes]], image_size: int) -> np.ndarray:
  images = np.empty((len(items), image_size, image_size, 3), np.uint8)
  for i, (label, data) in enumerate(items):
    images[i] = _decode_image(label, data, image_size)
  return images


def _decode_image(label: str, data: bytes, image_size: int) -> np.ndarray:
  try:
    with Image.open(io.BytesIO(data), formats=('JPEG', 'PNG')) as image:
      if image.size != (image_size, image_size):
        raise UserError(f'Image {label} is {image.size[0]}x{image.size[1]}, expected '
                        f'{image_size}x{image_size} (data.image_size).')
      return np.asarray(image if image.mode == 'RGB' else image.convert('RGB'))
  except (OSError, SyntaxError, ValueError) as e:  # what Pillow raises for bad files
    raise UserError(f'Cannot decode image {label}: {e}') from e


# Cache of decoded folders.


def _cache_dir(data_config) -> pathlib.Path:
  if data_config.cache_dir:
    return pathlib.Path(data_config.cache_dir)
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return pathlib.Path(base, 'squeezenet_jax')


def _cache_key(path: str, image_size: int) -> str:
  """Hash of what the decoded arrays depend on: every source file's path, size, mtime."""
  root = os.path.abspath(path)
  files = [root]
  if os.path.isdir(root):
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(root, followlinks=True)
                   for f in names)
  stats = [(f, s.st_size, s.st_mtime_ns) for f, s in ((f, os.stat(f)) for f in files)]
  payload = json.dumps([_CACHE_VERSION, image_size, root, stats])
  return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _read_cache(cache_file: pathlib.Path) -> dict[str, _Part] | None:
  if not cache_file.exists():
    return None
  try:
    with np.load(cache_file, allow_pickle=False) as arrays:
      return {s: _Part(images=arrays[f'{s}_images'], labels=arrays[f'{s}_labels'],
                       class_names=tuple(arrays[f'{s}_classes'].tolist()))
              for s in SPLITS if f'{s}_images' in arrays.files}
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    logging.warning('Ignoring unreadable cache %s (%s).', cache_file, e)
    return None


def _write_cache(cache_file: pathlib.Path, parts: dict[str, _Part]) -> None:
  """Writes atomically (temporary file, then rename) so readers never see half a file."""
  arrays = {}
  for split, part in parts.items():
    arrays.update({f'{split}_images': part.images, f'{split}_labels': part.labels,
                   f'{split}_classes': np.array(part.class_names)})
  tmp_name = None
  try:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix='.tmp',
                                     delete=False) as tmp:
      tmp_name = tmp.name
      np.savez(tmp, **arrays)
    os.replace(tmp_name, cache_file)
    logging.info('Cached decoded images in %s.', cache_file)
  except OSError as e:
    if tmp_name and os.path.exists(tmp_name):
      os.remove(tmp_name)
    logging.warning('Could not write cache %s (%s); decoding again next time.',
                    cache_file, e)
