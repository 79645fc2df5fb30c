"""Stopping on SIGTERM/SIGINT at the next safe point, with a checkpoint, then exit 143/130."""

import signal
import threading

from absl import logging


class Preempted(Exception):
  """Work stopped on a signal after saving what it had; rerunning resumes."""

  def __init__(self, signum: int, step: int):
    super().__init__(f'stopped by {signal.Signals(signum).name} at step {step} with a '
                     'checkpoint saved; rerun the same command to resume')
    self.signum = signum

  @property
  def exit_code(self) -> int:
    return 128 + self.signum  # the shell's convention for "ended by signal N"


class SignalCatcher:
  """Turns SIGTERM/SIGINT into a flag checked at safe points (a second one kills).

  `arm` may come later than construction (training arms it once compiled, so a signal
  while loading or compiling still ends the process at once); `disarm` is idempotent.
  """

  def __init__(self):
    self.signum = None
    self._previous = {}

  def arm(self) -> 'SignalCatcher':
    if not self._previous and threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._catch)
    return self

  def disarm(self) -> None:
    while self._previous:
      signum, handler = self._previous.popitem()
      signal.signal(signum, handler)

  def __enter__(self):
    return self.arm()

  def _catch(self, signum, frame):
    del frame
    self.signum = signum
    logging.warning('%s received: saving a checkpoint after this epoch',
                    signal.Signals(signum).name)
    signal.signal(signum, self._previous[signum])

  def __exit__(self, *exc):
    self.disarm()
