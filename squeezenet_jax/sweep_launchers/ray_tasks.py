"""`--sweep_launcher=ray`: each sweep point a Ray task, on a local Ray instance or a cluster.

Ray core tasks rather than Ray Tune: the points are a fixed list with their own resume
and report, so Tune's search, schedulers and result store would add nothing. Each task
runs the point's `worker` process (the inline trainer, as the local launcher does) with
`gpus_per_point` of a GPU: Ray hands it its GPU in CUDA_VISIBLE_DEVICES and, for a
fraction, the task caps the worker to that share of the GPU's memory so that several
points share one GPU. A task whose worker dies (a lost node, the OOM killer) is retried
up to MAX_RETRIES times and resumes from the point's checkpoint, so the sweep's workdir
must be on a filesystem every node sees at the same path; the package travels to the
nodes with the job (`py_modules`), its dependencies must be installed there.
SIGTERM/SIGINT to the sweep creates `<workdir>/.workers/stop`, on which every task's
worker saves a checkpoint and exits; the sweep then exits 128 + signal (a second signal
stops it at once).

Ray imports this module on every node to run a task: it imports no JAX at the top.
"""

import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from absl import logging

from squeezenet_jax.errors import UserError
from squeezenet_jax.sweep_launchers import OnFinished
from squeezenet_jax.sweep_launchers import SweepStopped
from squeezenet_jax.sweep_launchers import worker
from squeezenet_jax.training.preemption import SignalCatcher

MAX_RETRIES = 3  # per point, for workers that die; a point that fails is not retried
_WAIT_SECONDS = 0.5


class WorkerDied(Exception):
  """The point's worker process was killed: Ray retries the task, which resumes it."""


def _import_ray():
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError('--sweep_launcher=ray needs Ray: pip install -r requirements-ray.txt'
                    ) from None
  return ray


def worker_env(gpus: float, cpu_env: Mapping[str, str]) -> dict[str, str]:
  """What a task adds to its worker's environment: a memory cap for a GPU fraction,
  the CPU platform (with `cpu_env`'s device count) for none."""
  if gpus <= 0:
    return {'JAX_PLATFORMS': 'cpu', **cpu_env}
  if gpus < 1:
    from squeezenet_jax.sweep_launchers import local  # pylint: disable=g-import-not-at-top
    return {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false',
            'XLA_PYTHON_CLIENT_MEM_FRACTION': f'{local.SHARED_GPU_MEMORY * gpus:.3g}'}
  return {}


def train_point(spec: str, log: str, cwd: str, env: dict[str, str], stop: str) -> int:
  """The Ray task: the point's worker process; its exit status (see `worker`).

  Runs on a Ray worker, where Ray has set CUDA_VISIBLE_DEVICES to the task's GPUs.
  When the sweep is stopped (the file `stop` appears, on the shared filesystem), the
  worker gets SIGTERM and ends after its checkpoint.
  """
  if os.path.exists(stop):
    return 128 + signal.SIGTERM
  proc = worker.start(spec, {**os.environ, **env}, log,
                      cwd=cwd if os.path.isdir(cwd) else None)
  signalled = False
  while True:
    try:
      returncode = proc.wait(timeout=_WAIT_SECONDS)
      break
    except subprocess.TimeoutExpired:
      if not signalled and os.path.exists(stop):
        proc.send_signal(signal.SIGTERM)
        signalled = True
    except KeyboardInterrupt:  # ray.cancel
      proc.send_signal(signal.SIGTERM)
      proc.wait()
      raise
  if returncode < 0:
    raise WorkerDied(f'worker killed by {signal.Signals(-returncode).name}')
  return returncode


class RayLauncher:
  """Schedules the points as Ray tasks and reports each as it ends (see the module doc).

  `address`: an existing cluster ('auto' on its head node, or host:port); None starts
  a local instance. `gpus_per_point`: a GPU fraction (0.25: four points per GPU), a
  count, or 0 for CPU points; None: 1 when the cluster has GPUs, else 0.
  `max_in_flight`: at most this many points scheduled at once (None: as resources allow).
  """

  def __init__(self, address: str | None = None, gpus_per_point: float | None = None,
               max_in_flight: int | None = None):
    _import_ray()
    if gpus_per_point is not None and gpus_per_point < 0:
      raise UserError(f'--sweep_gpus_per_point={gpus_per_point}: give 0 or more')
    if gpus_per_point is not None and gpus_per_point > 1 and gpus_per_point % 1:
      raise UserError(f'--sweep_gpus_per_point={gpus_per_point}: above 1, give whole GPUs')
    self.address = address
    self.gpus_per_point = gpus_per_point
    self.max_in_flight = max_in_flight
    # A local instance's tasks share this machine's GPUs with this process.
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

  def _gpus(self, cluster_gpus: float) -> float:
    if self.gpus_per_point is None:
      return 1.0 if cluster_gpus else 0.0
    if self.gpus_per_point > cluster_gpus:
      raise UserError(f'--sweep_gpus_per_point={self.gpus_per_point:g} but the Ray cluster '
                      f'has {cluster_gpus:g} GPUs; give at most that (0 trains on CPUs)')
    return float(self.gpus_per_point)

  def __call__(self, points: Sequence[Any], dirs: Mapping[str, Path],
               on_finished: OnFinished, *, workdir: str | Path,
               allow_config_change: bool = False) -> None:
    if not points:
      return
    ray = _import_ray()
    import squeezenet_jax  # pylint: disable=g-import-not-at-top
    started_here = not ray.is_initialized()
    if started_here:
      try:
        ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                 runtime_env={'py_modules': [squeezenet_jax]})
      except ConnectionError as e:
        raise UserError(f'cannot reach the Ray cluster at {self.address}: {e}') from None
    try:
      self._run(ray, points, dirs, on_finished, Path(workdir), allow_config_change)
    finally:
      if started_here:
        ray.shutdown()

  def _run(self, ray, points, dirs, on_finished, workdir: Path,
           allow_config_change: bool) -> None:
    from squeezenet_jax.sweep_launchers import local  # pylint: disable=g-import-not-at-top
    gpus = self._gpus(ray.cluster_resources().get('GPU', 0))
    platform, ids = local.local_devices()
    cpu_env = local.worker_envs(1, 'cpu', ids if platform == 'cpu' else ['0'], os.environ)[0]
    task = ray.remote(train_point).options(
        num_cpus=1, num_gpus=gpus, max_retries=MAX_RETRIES, retry_exceptions=[WorkerDied])
    env = worker_env(gpus, cpu_env)
    queue, running, stopped = list(points), {}, []  # running: ObjectRef -> point
    stop_file = worker.stop_path(workdir).absolute()
    stop_file.unlink(missing_ok=True)  # from an earlier, stopped run
    with SignalCatcher() as signals:
      while running or (queue and signals.signum is None):
        while queue and signals.signum is None and (
            self.max_in_flight is None or len(running) < self.max_in_flight):
          point = queue.pop(0)
          spec = worker.spec_path(workdir, point.name).absolute()
          worker.write_spec(spec, point.config, str(Path(dirs[point.name]).absolute()),
                            allow_config_change)
          log = worker.log_path(workdir, point.name).absolute()
          running[task.remote(str(spec), str(log), os.getcwd(), env, str(stop_file))] = point
          logging.info('Sweep point %d %s: submitted to Ray (%g GPU; log %s)', point.index,
                       point.name, gpus, log)
        if signals.signum is not None and not stop_file.exists():  # workers save and stop
          stop_file.parent.mkdir(parents=True, exist_ok=True)
          stop_file.touch()
        done, _ = ray.wait(list(running), num_returns=1, timeout=_WAIT_SECONDS)
        for ref in done:
          point = running.pop(ref)
          error = _outcome(ray, ref, worker.log_path(workdir, point.name), signals.signum)
          if error == worker.STOPPED:
            stopped.append(point.name)
          else:
            on_finished(point, error)
    unfinished = stopped + [p.name for p in queue]
    if signals.signum is not None and unfinished:
      raise SweepStopped(signals.signum, unfinished)


def _outcome(ray, ref, log: Path, stopping: int | None) -> str | None:
  """As `worker.outcome`, for a task: its worker's exit status, or how the task failed."""
  try:
    returncode = ray.get(ref)
  except ray.exceptions.TaskCancelledError:
    return worker.STOPPED
  except ray.exceptions.RayTaskError as e:
    if isinstance(e.cause, WorkerDied):
      return f'its worker died {MAX_RETRIES + 1} times ({e.cause}; log: {log})'
    return f'its Ray task failed: {e.cause!r} (log: {log})'
  except ray.exceptions.RayError as e:  # the Ray worker itself died MAX_RETRIES + 1 times
    return f'its Ray task failed: {type(e).__name__} (log: {log})'
  return worker.outcome(returncode, log, stopping)
