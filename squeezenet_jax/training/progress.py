"""What the loop prints: a line per epoch, and progress lines inside long epochs.

A scanned epoch (GPU/TPU) is one program and takes seconds: one line per epoch. A
stepped epoch (CPU) can take minutes, so it also gets a line at most every
`INTERVAL_SECONDS` with the images/s so far and the epoch's ETA; it waits for the
device only then, so the steps still queue up between lines.
"""

import time
from typing import Any

import jax
from absl import logging

INTERVAL_SECONDS = 10.0


def format_seconds(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'


class EpochProgress:
  """An epoch's `on_step`: a progress line at most every INTERVAL_SECONDS (a scanned
  epoch never calls it)."""

  def __init__(self, epoch: int, num_epochs: int, steps: int, batch_size: int):
    self._epoch, self._num_epochs = epoch, num_epochs
    self._steps, self._batch_size = steps, batch_size
    self._start = self._last = time.perf_counter()

  def __call__(self, step: int, state: Any) -> None:
    now = time.perf_counter()
    if now - self._last < INTERVAL_SECONDS or step == self._steps:
      return
    jax.block_until_ready(state.step)  # the figures below are of finished steps
    now = self._last = time.perf_counter()
    rate = step * self._batch_size / (now - self._start)
    eta = (self._steps - step) * self._batch_size / rate
    logging.info('epoch %d/%d  step %d/%d (%d%%)  %.0f img/s  epoch eta %s', self._epoch,
                 self._num_epochs, step, self._steps, 100 * step // self._steps, rate,
                 format_seconds(eta))


def log_epoch(config, epoch: int, step: int, metrics: dict[str, float],
              images_per_second: float, eta_seconds: float) -> None:
  val = f'  val_acc {metrics["val_accuracy"]:.4f}' if 'val_accuracy' in metrics else ''
  logging.info('epoch %d/%d  step %d  loss %.4f  train_acc %.4f%s  %.0f img/s  eta %s',
               epoch, config.num_epochs, step, metrics['train_loss'],
               metrics['train_accuracy'], val, images_per_second,
               format_seconds(eta_seconds))
