"""A cache of decoded folder sources: one .npz per data.path entry, keyed by its files.

Decoding 50,000 JPEGs takes seconds to minutes; reading the cache back takes under a
second. The key hashes every source file's path, size and mtime, so an edited folder
is decoded again; writes are atomic, so a killed run never leaves half a cache file.
"""

import hashlib
import json
import os
import pathlib
import tempfile
import time
import zipfile

import numpy as np
from absl import logging

from squeezenet_jax.data import archives
from squeezenet_jax.errors import UserError

_CACHE_VERSION = 1  # bump when the cached arrays' meaning changes


def cached_folder(path: str, image_size: int, directory: pathlib.Path) -> dict[str, archives.Part]:
  """The splits under one data.path entry, decoded once and then read from the cache."""
  if not os.path.exists(path):
    raise UserError(f'data.path {path!r} does not exist.')
  name = os.path.basename(os.path.abspath(path))
  cache_file = directory / f'{name}-{_cache_key(path, image_size)}.npz'
  cached = _read_cache(cache_file)
  if cached is not None:
    logging.info('Cache hit for %s: %s.', path, cache_file)
    return cached
  start = time.perf_counter()
  parts = archives.read_folder(path, image_size)
  logging.info('Decoded %d images from %s in %.1f s.',
               sum(len(p.labels) for p in parts.values()), path, time.perf_counter() - start)
  _write_cache(cache_file, parts)
  return parts


def cache_dir(data_config) -> pathlib.Path:
  if data_config.cache_dir:
    return pathlib.Path(data_config.cache_dir).expanduser()
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


def _read_cache(cache_file: pathlib.Path) -> dict[str, archives.Part] | None:
  if not cache_file.exists():
    return None
  try:
    with np.load(cache_file, allow_pickle=False) as arrays:
      return {s: archives.Part(images=arrays[f'{s}_images'], labels=arrays[f'{s}_labels'],
                       class_names=tuple(arrays[f'{s}_classes'].tolist()))
              for s in archives.SPLITS if f'{s}_images' in arrays.files}
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    logging.warning('Ignoring unreadable cache %s (%s).', cache_file, e)
    return None


def _write_cache(cache_file: pathlib.Path, parts: dict[str, archives.Part]) -> None:
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
