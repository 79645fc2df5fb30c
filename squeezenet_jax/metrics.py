"""Metrics as JSON lines (the source of truth) and, where available, TensorBoard."""

import json
import math
import os
from pathlib import Path
from typing import Any

import jax
from absl import logging


def _plain(value: Any) -> Any:
  """JSON-safe scalars: device arrays to Python numbers, NaN/inf to strings."""
  if hasattr(value, 'item'):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricsWriter:
  """Appends one JSON object per event to metrics.jsonl; mirrors scalars to TensorBoard.

  Only process 0 writes, so multi-process runs log once.
  """

  def __init__(self, path: str | os.PathLike, tensorboard_dir: str | None = None):
    self._enabled = jax.process_index() == 0
    self._path = Path(path)
    self._tb = None
    if self._enabled and tensorboard_dir:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(tensorboard_dir)
      except ImportError:
        logging.warning('tensorboardX is not installed: metrics go to %s only', path)

  def write(self, **event: Any) -> None:
    if not self._enabled:
      return
    event = {k: _plain(v) for k, v in event.items()}
    self._path.parent.mkdir(parents=True, exist_ok=True)
    with self._path.open('a') as f:
      f.write(json.dumps(event, sort_keys=True) + '\n')
    if self._tb is not None and 'step' in event:
      for key, value in event.items():
        if key not in ('step', 'epoch') and isinstance(value, (int, float)):
          self._tb.add_scalar(key, value, event['step'])
      self._tb.flush()

  def truncate_after(self, step: int) -> None:
    """Drops events past `step`: a resumed run redoes those epochs and logs them again."""
    if not self._enabled or not self._path.exists():
      return
    events = read_metrics(self._path)
    kept = [e for e in events if e.get('step', 0) <= step]
    if len(kept) < len(events):
      tmp = self._path.with_name(f'.{self._path.name}.tmp{os.getpid()}')
      tmp.write_text(''.join(json.dumps(e, sort_keys=True) + '\n' for e in kept))
      os.replace(tmp, self._path)
      logging.info('Dropped %d metrics rows past step %d (redone after resuming)',
                   len(events) - len(kept), step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  path = Path(path)
  if not path.exists():
    return []
  events = []
  for line in path.read_bytes().splitlines():
    try:
      event = json.loads(line)
    except ValueError:  # a line cut short by a killed process
      continue
    if isinstance(event, dict):
      events.append(event)
  return events
