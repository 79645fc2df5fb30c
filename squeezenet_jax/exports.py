"""A workdir's exports folder (`W/exports/<format>/`), changed only as a whole.

An export (or a compress stage) writes its formats into `exports/.partial/`, where
nothing reads them, and then commits: each old format folder is moved to
`exports/.previous/`, each new one into its place, and sizes.json is written, stamped
with the commit's id. Writing sizes.json is the commit point. A process killed before
it leaves a journal (`exports/.commit.json`), and the next export or compress rolls the
folders back to the previous complete set; killed after it, only cleaning up is left.
So the formats on disk are always one export's, and sizes.json describes them.
Every rename stays inside `exports/`: one filesystem, so each is atomic.
"""

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError

EXPORTS_DIR = 'exports'
SIZES_FILE = 'sizes.json'
ID_KEY = 'export_id'  # sizes.json's stamp: the commit that wrote it
_PARTIAL, _PREVIOUS, _JOURNAL = '.partial', '.previous', '.commit.json'


def exports_dir(workdir: str | os.PathLike) -> Path:
  return Path(workdir) / EXPORTS_DIR


def committed_id(workdir: str | os.PathLike) -> str | None:
  path = Path(workdir) / SIZES_FILE
  return workdir_lib.read_json(path).get(ID_KEY) if path.exists() else None


def formats_on_disk(workdir: str | os.PathLike) -> set[str]:
  """The committed format folders."""
  root = exports_dir(workdir)
  return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith('.')} if (
      root.is_dir()) else set()


def check_complete(workdir: str | os.PathLike) -> None:
  """For readers that write nothing (predict): refuses a half-committed export."""
  if (exports_dir(workdir) / _JOURNAL).exists():
    journal = workdir_lib.read_json(exports_dir(workdir) / _JOURNAL)
    if journal.get('id') != committed_id(workdir):
      raise UserError(f'the export in {exports_dir(workdir)} was interrupted while its '
                      f'formats were swapped in: run --mode=export --workdir={workdir} again '
                      '(it restores the complete set first)')


def recover(workdir: str | os.PathLike) -> None:
  """Rolls an interrupted commit back (or finishes its cleanup); drops partial writes.

  Run by the writers (export, compress) under the workdir's lock.
  """
  root = exports_dir(workdir)
  journal_path = root / _JOURNAL
  if journal_path.exists():
    journal = workdir_lib.read_json(journal_path)
    if journal.get('id') != committed_id(workdir):
      for fmt, is_new in journal.get('formats', []):
        _roll_back(root, fmt, is_new)
    shutil.rmtree(root / _PREVIOUS, ignore_errors=True)
    journal_path.unlink()
  shutil.rmtree(root / _PREVIOUS, ignore_errors=True)
  shutil.rmtree(root / _PARTIAL, ignore_errors=True)


def _roll_back(root: Path, fmt: str, is_new: bool) -> None:
  current, previous = root / fmt, root / _PREVIOUS / fmt
  if is_new and not (root / _PARTIAL / fmt).exists():
    shutil.rmtree(current, ignore_errors=True)  # the new folder had been moved in
  if previous.exists():
    os.replace(previous, current)


class Transaction:
  """New format folders, written under `exports/.partial/`, swapped in by `commit`."""

  def __init__(self, workdir: str | os.PathLike):
    recover(workdir)
    self.workdir, self.root = Path(workdir), exports_dir(workdir)
    self.partial = self.root / _PARTIAL
    self.partial.mkdir(parents=True)
    self.id = f'{time.time_ns():x}-{os.getpid()}'

  def directory(self, fmt: str) -> Path:
    """Where to write `fmt`'s files (an empty folder)."""
    path = self.partial / fmt
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path

  def commit(self, write_report: Callable[[str], None], reported: Sequence[str]) -> None:
    """Swaps the written formats in, and removes committed ones not in `reported` (the
    formats sizes.json will describe); `write_report(id)` writes sizes.json with
    `ID_KEY` = id: the commit point."""
    written = sorted(p.name for p in self.partial.iterdir())
    unreported = sorted(formats_on_disk(self.workdir) - set(reported) - set(written))
    formats = [(f, True) for f in written] + [(f, False) for f in unreported]
    try:
      workdir_lib.write_json(self.root / _JOURNAL, {'id': self.id, 'formats': formats})
      previous = self.root / _PREVIOUS
      previous.mkdir(exist_ok=True)
      for fmt, _ in formats:
        if (self.root / fmt).exists():
          os.replace(self.root / fmt, previous / fmt)
        if (self.partial / fmt).exists():
          os.replace(self.partial / fmt, self.root / fmt)
      write_report(self.id)
    except BaseException:
      recover(self.workdir)  # e.g. a full disk: the previous set back at once
      raise
    shutil.rmtree(previous)
    (self.root / _JOURNAL).unlink()
    self.partial.rmdir()

  def abort(self) -> None:
    """Drops what was written; the committed set stays as it was."""
    shutil.rmtree(self.partial, ignore_errors=True)
