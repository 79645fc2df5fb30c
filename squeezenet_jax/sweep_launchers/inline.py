"""The default launcher: one point after another in this process, on every local device.

A `Preempted` from the trainer (SIGTERM/SIGINT, after the point's checkpoint) and any
crash pass through: the sweep stops there and a rerun resumes the point.
"""

from pathlib import Path
from typing import Any, Mapping, Sequence

from absl import logging

from squeezenet_jax.errors import UserError
from squeezenet_jax.sweep_launchers import OnFinished
from squeezenet_jax.training import loop


def run(points: Sequence[Any], dirs: Mapping[str, Path], on_finished: OnFinished, *,
        workdir: str | Path, allow_config_change: bool = False) -> None:
  del workdir  # the points' directories are all it needs
  for point in points:
    logging.info('Sweep point %d %s: training in %s', point.index, point.name,
                 dirs[point.name])
    try:
      loop.train_and_evaluate(point.config, str(dirs[point.name]),
                              allow_config_change=allow_config_change)
    except UserError as e:  # e.g. diverged: the other points may still be good
      on_finished(point, str(e))
    else:
      on_finished(point, None)
