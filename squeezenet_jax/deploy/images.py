"""Images to classify (`--mode=predict`): files, folders and archives, any size.

Each image becomes what the model was trained on: RGB, S x S (S = data.image_size),
uint8. CIFAR-10's images are native 32 x 32 photos of a centred object, so a larger
image is centre-cropped to a square (keeping the object's proportions) and resized
with Pillow's antialiased bicubic filter; JPEGs are first decoded at the smallest
DCT scale still at least S x S (`Image.draft`), which is fast for camera photos. An
image already S x S is used as decoded, exactly as the training data was.
EXIF orientation is applied; transparent pixels are composited onto white.

An unreadable file (missing, corrupt, not an image, a broken archive) is named in
`errors` and the rest are still returned.
"""

import concurrent.futures
import dataclasses
import io
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from PIL import ImageOps

from squeezenet_jax.data import archives
from squeezenet_jax.data import walk
from squeezenet_jax.errors import UserError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.bmp', '.gif', '.webp',
                  '.tif', '.tiff', '.ppm', '.pgm', '.pbm', '.pnm', '.tga', '.ico')
TAR_SUFFIXES = ('.tar', '.tar.gz', '.tgz', '.tar.xz', '.txz', '.tar.bz2', '.tbz2')
ZIP_SUFFIXES = ('.zip',)
_CHUNK = 64  # images decoded at a time, so only that many files' bytes are held


@dataclasses.dataclass(frozen=True)
class ImageSet:
  """Decoded images, in the order found, and the files that could not be read."""

  names: list[str]  # path, or `archive:member` for an image inside an archive
  images: np.ndarray  # (len(names), S, S, 3) uint8
  errors: list[tuple[str, str]]  # (name, what went wrong)


def read_images(paths: Sequence[str | os.PathLike], image_size: int) -> ImageSet:
  """Every image under `paths` (image files, folders searched recursively, archives).

  Folders contribute the files with an image suffix (IMAGE_SUFFIXES); archives
  (.tar, .tar.gz/.tgz, .tar.xz/.txz, .tar.bz2, .zip) their image members; a file
  named directly is decoded whatever its suffix. Hidden files are skipped.
  """
  if not paths:
    raise UserError('no images given: name image files, folders or archives')
  names, images, errors = [], [], []
  with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
    for chunk in _chunks(_sources(paths), _CHUNK):
      decoded = pool.map(lambda item: _decode(item[1], image_size), chunk)
      for (name, _), (image, error) in zip(chunk, decoded):
        if error is None:
          names.append(name)
          images.append(image)
        else:
          errors.append((name, error))
  stacked = (np.stack(images) if images
             else np.zeros((0, image_size, image_size, 3), np.uint8))
  return ImageSet(names=names, images=stacked, errors=errors)


# Sources: (name, a Path to read, the bytes read from an archive, or an error message).

_Item = tuple[str, Path | bytes | str]


def _sources(paths: Sequence[str | os.PathLike]) -> Iterator[_Item]:
  for path in paths:
    path = Path(path).expanduser()
    if path.is_dir():
      yield from _folder(path)
    elif (why := walk.regular_file_error(path)) is not None:
      yield str(path), why
    elif path.name.lower().endswith(TAR_SUFFIXES):
      yield from _tar(path)
    elif path.name.lower().endswith(ZIP_SUFFIXES):
      yield from _zip(path)
    else:
      yield str(path), path


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_SUFFIXES) and not walk.hidden(name)


def _folder(root: Path) -> Iterator[_Item]:
  found = False
  for entry in walk.walk(root):
    if entry.kind != 'dir' and _is_image(entry.relative):
      found = True
      yield str(entry.path), entry.path if entry.kind == 'file' else entry.why
  if not found:
    yield str(root), f'no image files ({", ".join(IMAGE_SUFFIXES[:5])}, ...) in this folder'


def _tar(path: Path) -> Iterator[_Item]:
  found = False
  try:
    for name, data in walk.tar_members(path, _is_image):
      if data is not None:
        found = True
        yield f'{path}:{name}', data
  except walk.TAR_ERRORS as e:
    yield str(path), f'unreadable archive ({e})'
    return
  if not found:
    yield str(path), 'no image files in this archive'


def _zip(path: Path) -> Iterator[_Item]:
  try:
    archive = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    yield str(path), f'unreadable archive ({e})'
    return
  with archive:
    members = [m for m in archive.infolist() if not m.is_dir() and _is_image(m.filename)]
    if not members:
      yield str(path), 'no image files in this archive'
    for member in members:
      try:
        yield f'{path}:{member.filename}', archive.read(member)
      except (zipfile.BadZipFile, OSError, EOFError) as e:  # e.g. a bad CRC
        yield f'{path}:{member.filename}', f'unreadable archive member ({e})'


def _chunks(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


# Decoding.


def _decode(source: Path | bytes | str, image_size: int) -> tuple[np.ndarray | None, str | None]:
  """(image, None), or (None, error message)."""
  if isinstance(source, str):
    return None, source
  try:
    with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as image:
      return prepare(image, image_size), None
  except Image.UnidentifiedImageError:
    return None, 'not an image Pillow can read'
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    return None, f'cannot decode image ({e})'
  except UserError as e:  # a pixel format with no one meaning as RGB
    return None, str(e)


def prepare(image: Image.Image, image_size: int) -> np.ndarray:
  """An opened image as the model's input: RGB, centre square, image_size^2, uint8."""
  image.draft('RGB', (image_size, image_size))  # JPEG only: decode at a reduced scale
  image = archives.to_rgb(ImageOps.exif_transpose(image), 'the image')
  width, height = image.size
  if (width, height) != (image_size, image_size):
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize(
        (image_size, image_size), Image.Resampling.BICUBIC)
  return np.asarray(image, np.uint8)
