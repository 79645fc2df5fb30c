"""Images laid out `<split>/<class>/<image>` in a directory or a tar archive, decoded.

A folder source is read once (then cached, see `cache`): one streaming pass over the
directory or archive collects the encoded files, worker processes decode them, and
the result is one uint8 array per split with labels indexing sorted class names.
"""

import concurrent.futures
import dataclasses
import io
import multiprocessing
import os
import pathlib
from collections.abc import Iterator

import numpy as np
from absl import logging
from PIL import Image

from squeezenet_jax.data import walk
from squeezenet_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
LAYOUT = '<split>/<class>/<image> (e.g. train/cat/0001.png)'
_DECODE_CHUNK = 2048  # images per decoding task; no worker processes for fewer
# Not fork: the parent may run JAX threads. The fork server imports __main__ once.
_START_METHOD = ('forkserver' if 'forkserver' in multiprocessing.get_all_start_methods()
                 else 'spawn')


@dataclasses.dataclass(frozen=True)
class Part:
  """A split from one data.path entry: labels index its own class names."""

  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]


def read_folder(path: str, image_size: int) -> dict[str, Part]:
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
  for entry in walk.walk(root):
    if entry.kind == 'dir':
      yield entry.relative, None
    elif entry.relative.lower().endswith(IMAGE_SUFFIXES):
      if entry.kind == 'other':
        raise UserError(f'{entry.path} in data.path {root} is {entry.why}: remove it or '
                        'replace it with the image file')
      yield entry.relative, entry.path.read_bytes()


def _walk_archive(path: str) -> Iterator[tuple[str, bytes | None]]:
  try:
    yield from walk.tar_members(path, lambda name: name.lower().endswith(IMAGE_SUFFIXES))
  except walk.TAR_ERRORS as e:
    raise UserError(f'data.path {path!r} is neither a directory nor a readable '
                    f'.tar/.tar.gz/.tar.xz archive ({e}).') from e


def _parse_member(path: str, rel_path: str, is_dir: bool) -> tuple[str, ...] | None:
  """(split, class, file name) of an image, (split, class) of a class folder, else None."""
  parts = tuple(p for p in pathlib.PurePosixPath(rel_path).parts if p not in ('.', '/'))
  if not parts or walk.hidden(rel_path):
    return None  # hidden files and macOS metadata
  if is_dir:
    return parts if len(parts) == 2 and parts[0] in SPLITS else None
  if len(parts) != 3:
    raise UserError(f'Image {rel_path!r} in {path} is not laid out {LAYOUT}.')
  if parts[0] not in SPLITS:
    raise UserError(f'Image {rel_path!r} in {path}: split folder {parts[0]!r} is not one of '
                    f'{", ".join(SPLITS)}; expected {LAYOUT}.')
  return parts


def _check_layout(path: str, entries: list[tuple[str, ...]], class_dirs: set) -> None:
  if not entries:
    raise UserError(f'No .jpg/.jpeg/.png images in {path}; expected {LAYOUT}.')
  empty = sorted(class_dirs - {entry[:2] for entry in entries})
  if empty:
    raise UserError(f'Empty class folder(s) in {path}: '
                    f'{", ".join("/".join(d) for d in empty)}.')


def _group_by_split(entries: list[tuple[str, ...]], images: np.ndarray) -> dict[str, Part]:
  """Per split, images sorted by class then file name, labelled by sorted class name."""
  parts = {}
  for split in SPLITS:
    members = sorted((cls, name, i) for i, (s, cls, name) in enumerate(entries) if s == split)
    if not members:
      continue
    class_names = tuple(sorted({cls for cls, _, _ in members}))
    index = {c: i for i, c in enumerate(class_names)}
    parts[split] = Part(
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
    images[i] = decode_image(label, data, image_size)
  return images


def decode_image(label: str, data: bytes, image_size: int) -> np.ndarray:
  try:
    with Image.open(io.BytesIO(data), formats=('JPEG', 'PNG')) as image:
      if image.size != (image_size, image_size):
        raise UserError(f'Image {label} is {image.size[0]}x{image.size[1]}, expected '
                        f'{image_size}x{image_size} (data.image_size).')
      return np.asarray(to_rgb(image, f'Image {label}'))
  except (OSError, SyntaxError, ValueError) as e:  # what Pillow raises for bad files
    raise UserError(f'Cannot decode image {label}: {e}') from e


def to_rgb(image: Image.Image, label: str) -> Image.Image:
  """8-bit RGB: transparent pixels onto white, 16-bit grey scaled (not clipped) to 8.

  Pillow's own `convert('RGB')` clips 16-bit values at 255 and has no one meaning for
  32-bit integer or float pixels, so those are refused.
  """
  if image.mode.startswith('I;16'):
    return Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8),
                           'L').convert('RGB')
  if image.mode in ('I', 'F'):
    kind = '32-bit integer' if image.mode == 'I' else 'floating-point'
    raise UserError(f'{label} has {kind} pixels, whose range is unknown: save it '
                    'as 8-bit RGB or greyscale')
  if image.mode in ('RGBA', 'LA', 'PA', 'La', 'RGBa') or 'transparency' in image.info:
    image = image.convert('RGBA')
    background = Image.new('RGBA', image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert('RGB')
  return image if image.mode == 'RGB' else image.convert('RGB')
