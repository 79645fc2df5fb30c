"""Decisions that every process of a multi-process run takes together.

In a `jax.distributed` run each process executes the same program; where one process
alone learns something (a signal arrived, process 0's workdir is locked), it must reach
the others, or they diverge: one saves and exits while the others wait forever in the
next epoch's collectives. In a single process these are plain function calls.
"""

from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from squeezenet_jax.errors import UserError

_MESSAGE_BYTES = 2048


def agreed_signal(signum: int | None) -> int | None:
  """The signal any process caught since the last call (the highest number), else None."""
  if jax.process_count() == 1:
    return signum
  caught = multihost_utils.process_allgather(np.int32(signum or 0))
  return int(np.max(caught)) or None


def _broadcast_text(text: str) -> str:
  data = np.zeros(_MESSAGE_BYTES, np.uint8)
  encoded = text.encode()[:_MESSAGE_BYTES]
  data[:len(encoded)] = np.frombuffer(encoded, np.uint8)
  data = np.asarray(multihost_utils.broadcast_one_to_all(data))
  return bytes(data).rstrip(b'\0').decode(errors='replace')


def on_process_0(fn: Callable[[], object]) -> None:
  """Runs `fn` on process 0 only; a UserError it raises is raised on every process."""
  message = ''
  if jax.process_index() == 0:
    try:
      fn()
    except UserError as e:
      message = str(e) or 'refused on process 0'
  if jax.process_count() > 1:
    message = _broadcast_text(message)
  if message:
    raise UserError(message)
