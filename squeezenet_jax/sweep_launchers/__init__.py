"""How a sweep's points train: inline, side by side in local processes, or by Ray.

`modes.sweep` hands a launcher the points left to train and a callback:

    launcher(points, dirs, on_finished, *, workdir, allow_config_change)

`dirs` maps each point's name to its directory; the launcher calls
`on_finished(point, error)` as each point ends (`error` None when it finished, else
why it failed) so the sweep rewrites its report then. A failing point never stops the
others. A signal stops the launcher after its running points saved checkpoints: it
raises `Preempted` (inline) or `SweepStopped` (workers), and main.py exits 128 + signal.

- `inline.run`: one point after another in this process, on every local device.
- `local.LocalProcesses(n)`: up to n `worker` processes at once, each on its own
  devices (a slice of the GPUs, or a share of one GPU's memory).
- `ray_tasks.RayLauncher`: each point a Ray task with a GPU fraction, on a local Ray
  instance or a cluster; a task whose worker dies is retried and resumes.

This module stays light (no JAX): `make_launcher` runs before JAX touches the devices.
"""

import signal
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from squeezenet_jax.errors import UserError
from squeezenet_jax.training.preemption import Preempted

LAUNCHERS = ('local', 'ray')

OnFinished = Callable[[Any, str | None], None]


class Launcher(Protocol):

  def __call__(self, points: Sequence[Any], dirs: Mapping[str, Path],
               on_finished: OnFinished, *, workdir: str | Path,
               allow_config_change: bool = False) -> None:
    ...


class SweepStopped(Preempted):
  """SIGTERM/SIGINT stopped the sweep once its running points saved their checkpoints."""

  def __init__(self, signum: int, unfinished: Sequence[str]):
    super().__init__(signum, step=0)
    self.args = (f'sweep stopped by {signal.Signals(signum).name} with {len(unfinished)} '
                 f'point(s) unfinished ({", ".join(unfinished)}); their checkpoints are '
                 'saved: rerun the same command to resume',)


def make_launcher(kind: str = 'local', workers: int = 1, *, ray_address: str | None = None,
                  gpus_per_point: float | None = None) -> Launcher:
  """The launcher the sweep flags ask for. Call it before JAX initialises its devices:
  side-by-side launchers set how this process shares them with the workers."""
  if kind not in LAUNCHERS:
    raise UserError(f'unknown --sweep_launcher={kind!r}; choose one of {", ".join(LAUNCHERS)}')
  if workers < 1:
    raise UserError(f'--sweep_workers={workers}: give 1 or more')
  if kind == 'ray':
    from squeezenet_jax.sweep_launchers import ray_tasks  # pylint: disable=g-import-not-at-top
    return ray_tasks.RayLauncher(address=ray_address, gpus_per_point=gpus_per_point,
                                 max_in_flight=workers if workers > 1 else None)
  if ray_address or gpus_per_point is not None:
    raise UserError('--sweep_ray_address and --sweep_gpus_per_point need --sweep_launcher=ray')
  if workers == 1:
    from squeezenet_jax.sweep_launchers import inline  # pylint: disable=g-import-not-at-top
    return inline.run
  from squeezenet_jax.sweep_launchers import local  # pylint: disable=g-import-not-at-top
  return local.LocalProcesses(workers)
