"""The files under a folder or in a tar archive, for training data and predict alike.

Directory links are followed, but no directory is entered twice (a link loop, or a
link back up the tree, ends there); hidden entries and macOS metadata are left out;
anything that is not a regular file (a named pipe, a socket, a device, a broken link)
is reported rather than opened, since opening a pipe blocks forever.
"""

import dataclasses
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath


@dataclasses.dataclass(frozen=True)
class Entry:
  relative: str  # '/'-separated, below the root
  path: Path
  kind: str  # 'dir', 'file' (a regular file), or 'other'
  why: str = ''  # for 'other': what it is


def hidden(relative: str) -> bool:
  return any(p.startswith('.') or p == '__MACOSX' for p in PurePosixPath(relative).parts)


def regular_file_error(path: Path) -> str | None:
  """None for a regular file (or a link to one), else why it cannot be read as one."""
  try:
    mode = path.stat().st_mode
  except FileNotFoundError:
    return 'a broken link' if path.is_symlink() else 'no such file or folder'
  except OSError as e:
    return f'cannot read it ({e.strerror})'
  if stat.S_ISREG(mode):
    return None
  if stat.S_ISFIFO(mode):
    return 'a named pipe, not a file'
  if stat.S_ISSOCK(mode):
    return 'a socket, not a file'
  return 'not a regular file'


def walk(root: str | os.PathLike) -> Iterator[Entry]:
  """Every entry below `root`, depth first, names sorted, each directory once."""
  root = Path(root)
  seen = {_identity(root)}
  yield from _walk(root, '', seen)


def _identity(path: Path) -> tuple[int, int]:
  info = path.stat()
  return info.st_dev, info.st_ino


def _walk(directory: Path, prefix: str, seen: set) -> Iterator[Entry]:
  try:
    names = sorted(os.listdir(directory))
  except OSError as e:
    yield Entry(prefix or '.', directory, 'other', f'cannot list it ({e.strerror})')
    return
  for name in names:
    relative = f'{prefix}{name}'
    if hidden(name):
      continue
    path = directory / name
    why = regular_file_error(path)
    if why is None:
      yield Entry(relative, path, 'file')
    elif path.is_dir():
      identity = _identity(path)
      if identity in seen:  # a link back to a directory already walked
        continue
      seen.add(identity)
      yield Entry(relative, path, 'dir')
      yield from _walk(path, f'{relative}/', seen)
    else:
      yield Entry(relative, path, 'other', why)


# What a damaged or truncated tar (plain, gzip, xz or bzip2) raises while it is read.
TAR_ERRORS = (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error, ValueError)


def tar_members(path: str | os.PathLike, wanted: Callable[[str], bool]
                ) -> Iterator[tuple[str, bytes | None]]:
  """(member name, its bytes, or None for a directory) for the directories and the
  `wanted` regular files of a tar archive, in one streaming pass (an .xz archive
  cannot be read any other way cheaply). Raises one of TAR_ERRORS if it is damaged."""
  with tarfile.open(path, mode='r|*') as archive:
    for member in archive:
      if member.isdir():
        yield member.name, None
      elif member.isfile() and wanted(member.name):
        yield member.name, archive.extractfile(member).read()
