"""`--sweep_workers=N`: up to N points side by side, each in a worker process of its own.

Each worker gets its own devices: a slice of the GPUs when there are at least as many
GPUs as workers (data parallel within the slice), else several workers per GPU, each
allocating on demand up to its share of the memory; on CPU, as many (virtual) devices
as this process has, so a point trains as it would inline. SIGTERM/SIGINT to the sweep
is passed on to every worker (as SIGTERM): each saves a checkpoint and exits, no new
point starts, and the sweep raises `SweepStopped` (main.py exits 128 + signal); a second
signal stops everything at once. Workers log to `<workdir>/.workers/<point>.log`.
"""

import dataclasses
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from absl import logging

from squeezenet_jax.errors import UserError
from squeezenet_jax.sweep_launchers import OnFinished
from squeezenet_jax.sweep_launchers import SweepStopped
from squeezenet_jax.sweep_launchers import worker
from squeezenet_jax.training.preemption import SignalCatcher

# Share of a GPU's memory that the workers on it divide among themselves when the user
# sets no XLA_PYTHON_CLIENT_MEM_FRACTION: the rest holds each process's CUDA context.
SHARED_GPU_MEMORY = 0.9
_PREALLOCATE = 'XLA_PYTHON_CLIENT_PREALLOCATE'
_POLL_SECONDS = 0.1


def with_cpu_device_count(xla_flags: str, count: int) -> str:
  """XLA_FLAGS with the host platform's device count set to `count`."""
  kept = [f for f in xla_flags.split()
          if not f.startswith('--xla_force_host_platform_device_count')]
  return ' '.join([*kept, f'--xla_force_host_platform_device_count={count}'])


def worker_envs(workers: int, platform: str, device_ids: Sequence[str],
                env: Mapping[str, str]) -> list[dict[str, str]]:
  """What each of `workers` slots adds to `env` to get its own devices (module doc)."""
  count = len(device_ids)
  if platform == 'cpu':
    return [{'XLA_FLAGS': with_cpu_device_count(env.get('XLA_FLAGS', ''), count)}
            for _ in range(workers)]
  if platform != 'gpu':
    raise UserError(f'--sweep_workers={workers} runs points side by side on GPUs or CPUs, '
                    f'not on {platform}: use --sweep_workers=1 (or --sweep_launcher=ray)')
  if workers <= count:
    size = count // workers
    return [{'CUDA_VISIBLE_DEVICES': ','.join(device_ids[i * size:(i + 1) * size])}
            for i in range(workers)]
  total = float(env.get('XLA_PYTHON_CLIENT_MEM_FRACTION', SHARED_GPU_MEMORY))
  envs = []
  for i in range(workers):
    sharing = len(range(i % count, workers, count))  # workers on this one's GPU
    share = math.floor(total / sharing * 1000) / 1000  # rounded down: they must fit
    envs.append({'CUDA_VISIBLE_DEVICES': device_ids[i % count], _PREALLOCATE: 'false',
                 'XLA_PYTHON_CLIENT_MEM_FRACTION': f'{share:g}'})
  return envs


def local_devices() -> tuple[str, list[str]]:
  """This process's platform and its devices' ids as the workers' environment names them."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.local_devices()
  platform = devices[0].platform
  visible = os.environ.get('CUDA_VISIBLE_DEVICES')
  if platform == 'gpu' and visible:
    ids = [v.strip() for v in visible.split(',') if v.strip()][:len(devices)]
  else:
    ids = [str(i) for i in range(len(devices))]
  return platform, ids


@dataclasses.dataclass
class _Run:
  point: Any
  proc: subprocess.Popen
  log: Path


class _ForwardSignals(SignalCatcher):
  """The trainer's SignalCatcher, also passing the signal on to the running workers.

  As SIGTERM, whichever came: a worker still starting (before its trainer catches
  signals) then just ends, where SIGINT would end it with a KeyboardInterrupt crash.
  """

  def __init__(self, running: Mapping[int, _Run]):
    super().__init__()
    self._running = running

  def _catch(self, signum, frame):
    super()._catch(signum, frame)
    for run in list(self._running.values()):
      self.forward(run)

  def forward(self, run: _Run) -> None:
    if self.signum is not None and run.proc.poll() is None:
      run.proc.send_signal(signal.SIGTERM)


class LocalProcesses:
  """Up to `workers` points at a time, each in a `worker` process of its own.

  Construct it before JAX initialises its backend in this process: on GPUs it turns off
  preallocation here (this process only checks the points; the workers need the
  memory), while the workers keep the caller's environment otherwise.
  """

  def __init__(self, workers: int):
    if workers < 1:
      raise UserError(f'--sweep_workers={workers}: give 1 or more')
    self.workers = workers
    self._preallocate = os.environ.get(_PREALLOCATE)  # as the user set it, for the workers
    os.environ.setdefault(_PREALLOCATE, 'false')

  def _base_env(self) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(_PREALLOCATE, None)
    if self._preallocate is not None:
      env[_PREALLOCATE] = self._preallocate
    return env

  def __call__(self, points: Sequence[Any], dirs: Mapping[str, Path],
               on_finished: OnFinished, *, workdir: str | Path,
               allow_config_change: bool = False) -> None:
    if not points:
      return
    platform, ids = local_devices()
    envs = worker_envs(min(self.workers, len(points)), platform, ids, self._base_env())
    queue, running, free = list(points), {}, list(range(len(envs)))
    stopped: list[str] = []
    with _ForwardSignals(running) as signals:
      try:
        while running or (queue and signals.signum is None):
          while queue and free and signals.signum is None:
            slot, point = free.pop(0), queue.pop(0)
            running[slot] = self._start(point, dirs[point.name], workdir, envs[slot],
                                        allow_config_change)
            signals.forward(running[slot])  # if a signal came while it started
          for slot, run in list(running.items()):
            if run.proc.poll() is None:
              continue
            del running[slot]
            free.append(slot)
            error = worker.outcome(run.proc.returncode, run.log, signals.signum)
            if error == worker.STOPPED:
              stopped.append(run.point.name)
            else:
              on_finished(run.point, error)
          time.sleep(_POLL_SECONDS)
      finally:  # on an error here (or a second Ctrl-C), leave no worker behind
        for run in running.values():
          if run.proc.poll() is None:
            run.proc.terminate()
        for run in running.values():
          run.proc.wait()
    unfinished = stopped + [p.name for p in queue]
    if signals.signum is not None and unfinished:
      raise SweepStopped(signals.signum, unfinished)

  def _start(self, point, point_dir: Path, workdir, env: dict[str, str],
             allow_config_change: bool) -> _Run:
    spec = worker.spec_path(workdir, point.name)
    worker.write_spec(spec, point.config, str(point_dir), allow_config_change)
    log = worker.log_path(workdir, point.name)
    proc = worker.start(spec, {**self._base_env(), **env}, log)
    logging.info('Sweep point %d %s: training in %s (worker pid %d; %s; log %s)',
                 point.index, point.name, point_dir, proc.pid,
                 ' '.join(f'{k}={v}' for k, v in env.items()) or 'all devices', log)
    return _Run(point, proc, log)
