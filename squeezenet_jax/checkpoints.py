"""Orbax `CheckpointManager` under `workdir/checkpoints`: save, resume, measure on disk.

A step is saved as separate orbax items (`model`: parameters and BatchNorm statistics,
`opt_state`, `progress`: step and RNG; `live`: with `ema_decay`, the trained weights
whose average `model` holds), so its bytes on disk split naturally into
parameters, optimizer state and metadata, and inference code can restore `model`
alone. Each step is committed atomically by orbax (written to a temporary directory,
renamed when complete), so an interrupted save never replaces the last good step.
"""

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from squeezenet_jax.errors import UserError
from squeezenet_jax.errors import WriteError

ITEMS = ('model', 'opt_state', 'progress', 'live')  # live: only with an EMA (steps.TrainState)
CORRUPT_DIR = 'corrupt_checkpoints'  # beside checkpoints/: steps that failed to load


def directory_bytes(path: str | os.PathLike) -> int:
  """Bytes of all regular files under `path`: what it costs on disk."""
  total = 0
  for root, _, files in os.walk(path):
    for name in files:
      full = os.path.join(root, name)
      if not os.path.islink(full):
        total += os.path.getsize(full)
  return total


def _is_data_file(relative: Path) -> bool:
  """Orbax (OCDBT/TensorStore) keeps array chunks in `d/` folders; the rest is metadata."""
  return 'd' in relative.parts[:-1]


def step_accounting(step_dir: str | os.PathLike) -> dict[str, int]:
  """Bytes on disk of one step: array data per item, then metadata; sums to the total."""
  step_dir = Path(step_dir)
  sizes = {f'{item}_bytes': 0 for item in ITEMS}
  sizes['metadata_bytes'] = 0
  for file in step_dir.rglob('*'):
    if not file.is_file() or file.is_symlink():
      continue
    relative = file.relative_to(step_dir)
    item = relative.parts[0]
    if len(relative.parts) > 1 and item in ITEMS and _is_data_file(relative):
      sizes[f'{item}_bytes'] += file.stat().st_size
    else:
      sizes['metadata_bytes'] += file.stat().st_size
  sizes['total_bytes'] = sum(sizes.values())
  return sizes


# What the OS said, found in the long messages orbax and TensorStore wrap it in.
_OS_ERRORS = ('No space left on device', 'Read-only file system', 'Permission denied',
              'Disk quota exceeded')


def _write_failure(error: Exception) -> str:
  """The cause of a failed write in a few words: the OS error where one is quoted."""
  text = str(error)
  cause = next((reason for reason in _OS_ERRORS if reason in text), None)
  if cause:
    return cause
  lines = text.strip().splitlines()
  return f'{type(error).__name__}: {lines[0][:200] if lines else ""}'


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
  """Turns orbax's many write failures (disk full, read-only) into one WriteError."""
  try:
    yield
  except (UserError, WriteError, KeyboardInterrupt):
    raise
  except Exception as e:  # pylint: disable=broad-except  # OSError, ValueError, ...
    raise WriteError(f'could not save {what}: {_write_failure(e)}') from None


def _has_arrays(tree: Any) -> bool:
  return bool(jax.tree.leaves(tree))


def abstract_like(tree: Any) -> Any:
  """Shape/dtype/sharding skeleton of `tree`, the restore target orbax needs."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """A thin layer over `ocp.CheckpointManager` that turns failures into `UserError`s."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = None,
               read_only: bool = False):
    self.directory = Path(directory).absolute()
    if read_only and not self.directory.exists():
      raise UserError(f'no checkpoints in {self.directory}: train the run first')
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep or None, create=not read_only, read_only=read_only,
        cleanup_tmp_directories=not read_only)  # leftovers of a killed save
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=ITEMS)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def step_dir(self, step: int) -> Path:
    return self.directory / str(step)

  def has_item(self, step: int, item: str) -> bool:
    """Whether `step` was saved with `item` (one of ITEMS; e.g. `live` for an EMA run)."""
    return (self.step_dir(step) / item).is_dir()

  def save(self, step: int, items: dict[str, Any]) -> None:
    """Saves `items` (a subset of ITEMS; items without arrays are not written)."""
    args = {k: ocp.args.StandardSave(v) for k, v in items.items() if _has_arrays(v)}
    with self._writing(f'step {step}'):
      self._manager.save(step, args=ocp.args.Composite(**args), force=True)

  def wait(self) -> None:
    """Blocks until the last save is on disk (orbax saves asynchronously)."""
    with self._writing('the last step'):
      self._manager.wait_until_finished()

  def _writing(self, what: str):
    return writing(f'checkpoint {what} in {self.directory}')

  def restore(self, abstract_items: dict[str, Any], step: int | None = None,
              fallback: bool = False) -> tuple[dict[str, Any], int]:
    """(items, step): the named items of `step` (default: latest), in their skeletons.

    A corrupt or truncated step is a `UserError` naming it; with `fallback`, earlier
    steps are tried instead, newest first.
    """
    if step is None:
      candidates = sorted(self.all_steps(), reverse=True)
      if not candidates:
        raise UserError(f'no checkpoint found in {self.directory}')
    else:
      candidates = [step]
    for i, candidate in enumerate(candidates):
      try:
        restored = self._restore_step(abstract_items, candidate)
      except UserError as e:
        if not fallback or i + 1 == len(candidates):
          if not fallback and len(candidates) > 1:
            raise UserError(f'{e}; pass --checkpoint_fallback to resume from step '
                            f'{candidates[1]} instead') from None
          raise
        logging.warning('%s; falling back to step %d', e, candidates[i + 1])
        continue
      self._set_aside(candidates[:i])
      return restored, candidate
    raise AssertionError('unreachable')

  def _set_aside(self, steps: list[int]) -> None:
    """Moves unreadable steps out of the manager's way (kept, not deleted, for a look)."""
    if not steps:
      return
    aside = self.directory.parent / CORRUPT_DIR
    aside.mkdir(exist_ok=True)
    for step in steps:
      target = aside / f'{step}-{int(time.time())}'
      os.replace(self.step_dir(step), target)
      logging.warning('moved unreadable checkpoint step %d to %s', step, target)
    self._manager.reload()

  def _restore_step(self, abstract_items: dict[str, Any], step: int) -> dict[str, Any]:
    wanted = {k: v for k, v in abstract_items.items() if _has_arrays(v)}
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          **{k: ocp.args.StandardRestore(v) for k, v in wanted.items()}))
    except Exception as e:  # orbax raises many types for truncated/corrupt files
      first_line = str(e).strip().splitlines()[0][:160] if str(e).strip() else ''
      raise UserError(
          f'checkpoint {self.step_dir(step)} is corrupt or does not match this model '
          f'({type(e).__name__}: {first_line})') from None
    return {k: restored[k] if k in wanted else v for k, v in abstract_items.items()}

  def step_bytes(self, step: int | None = None) -> int:
    step = self.latest_step() if step is None else step
    return directory_bytes(self.step_dir(step)) if step is not None else 0

  def close(self) -> None:
    self.wait()
    self._manager.close()
