"""One sweep point in its own process: `python -m squeezenet_jax.sweep_launchers.worker
--spec=FILE`.

The side-by-side launchers (`local`, `ray_tasks`) write each point's spec (its resolved
config, its directory) beside the sweep and start this entry on it. It trains with the
inline trainer, `loop.train_and_evaluate`, so a point's files are exactly what an
inline sweep writes (the trainer holds the point's workdir lock), and it exits as
main.py does: 0 done, 2 on bad input (one `error:` line), 1 on a failed write,
128 + signal number when SIGTERM/SIGINT stopped it after a checkpoint. `outcome` reads
those back for the launcher.

The launching process may die without stopping its workers (kill -9, a lost Ray
worker): each worker asks the kernel for SIGTERM then (it saves and exits), and a new
worker of the same point waits for the old one's lock instead of failing on it.

This module imports no JAX at the top: Ray imports it on every node to run a task.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import ml_collections

from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import ERROR_PREFIX, EXIT_OK, EXIT_USER_ERROR, EXIT_WRITE_ERROR
from squeezenet_jax.errors import UserError, WriteError, user_facing

MODULE = 'squeezenet_jax.sweep_launchers.worker'  # run with `python -m`
SPEC_DIR = '.workers'  # in the sweep's workdir; a point's name never starts with '.'
STOPPED = 'stopped'  # what `outcome` says of a worker that a forwarded signal ended
# How long a worker waits for a previous worker of its point to save and release it.
LOCK_WAIT_SECONDS = 600.0
# Written to the log when a worker starts: where it runs.
_SHOWN_ENV = ('CUDA_VISIBLE_DEVICES', 'XLA_PYTHON_CLIENT_PREALLOCATE',
              'XLA_PYTHON_CLIENT_MEM_FRACTION', 'XLA_FLAGS', 'JAX_PLATFORMS')
_PARENT_ENV = 'SQUEEZENET_JAX_SWEEP_PARENT'  # the pid of the process that started the worker


def spec_path(workdir: str | os.PathLike, name: str) -> Path:
  return Path(workdir) / SPEC_DIR / f'{name}.json'


def log_path(workdir: str | os.PathLike, name: str) -> Path:
  return Path(workdir) / SPEC_DIR / f'{name}.log'


def stop_path(workdir: str | os.PathLike) -> Path:
  """A file whose appearance asks a sweep's remote workers to save and stop (Ray)."""
  return Path(workdir) / SPEC_DIR / 'stop'


def write_spec(path: str | os.PathLike, config: ml_collections.ConfigDict, point_dir: str,
               allow_config_change: bool = False) -> None:
  """What the worker needs: the point's resolved config and its directory.

  The config travels as its JSON text, which keeps its fields' order.
  """
  workdir_lib.write_json(path, {'config': config.to_json(), 'workdir': str(point_dir),
                                'allow_config_change': bool(allow_config_change)})


def read_spec(path: str | os.PathLike) -> dict[str, Any]:
  spec = workdir_lib.read_json(path)
  spec['config'] = ml_collections.ConfigDict(json.loads(spec['config']))
  return spec


def start(spec: str | os.PathLike, env: Mapping[str, str], log: str | os.PathLike,
          cwd: str | None = None) -> subprocess.Popen:
  """A worker on `spec` in environment `env`, its output appended to `log`.

  Its own session: a Ctrl-C in the terminal reaches only the sweep, which passes it on
  once (a second signal would stop the worker without its checkpoint).
  """
  package_root = str(Path(__file__).resolve().parents[2])  # so that `-m` finds the package
  env = {**env, _PARENT_ENV: str(os.getpid()),
         'PYTHONPATH': os.pathsep.join(p for p in (package_root, env.get('PYTHONPATH')) if p)}
  with open(log, 'a') as out:
    out.write(f'==== {time.strftime("%Y-%m-%d %H:%M:%S")} worker started: '
              f'{" ".join(f"{k}={v}" for k, v in env.items() if k in _SHOWN_ENV)}\n')
    out.flush()
    return subprocess.Popen(
        [sys.executable, '-m', MODULE, f'--spec={spec}'], cwd=cwd, env=env, stdout=out,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def error_line(log: str | os.PathLike) -> tuple[str | None, str | None]:
  """Why a worker failed, from its log: its `error:` line (None if it wrote none), and
  its last line."""
  try:
    lines = [l for l in Path(log).read_text(errors='replace').splitlines() if l.strip()]
  except OSError:
    return None, None
  errors = [l[len(ERROR_PREFIX):] for l in lines if l.startswith(ERROR_PREFIX)]
  return (errors[-1] if errors else None), (lines[-1].strip() if lines else None)


def outcome(returncode: int, log: Path, stopping: int | None = None) -> str | None:
  """None when the worker finished its point, STOPPED when it ended on the signal the
  sweep is `stopping` on (passed on to it), else why the point failed (one line)."""
  if returncode == EXIT_OK:
    return None
  if stopping and returncode in (128 + stopping, -stopping, 128 + signal.SIGTERM,
                                 -signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGINT):
    return STOPPED
  error, last = error_line(log)
  if returncode in (EXIT_USER_ERROR, EXIT_WRITE_ERROR) and error:
    return error
  if returncode < 0:
    return (f'its worker was killed by {signal.Signals(-returncode).name} (log: {log}); '
            'rerun the sweep to resume it from its checkpoint')
  if returncode > 128:
    return (f'its worker was stopped by {signal.Signals(returncode - 128).name} after a '
            'checkpoint; rerun the sweep to resume it')
  return f'its worker crashed (exit {returncode}): {last} (log: {log})'


def _parent_alive() -> bool:
  """Asks for SIGTERM when the launching process dies (Linux), so no worker outlives a
  killed sweep; False if it is already gone."""
  parent = os.environ.get(_PARENT_ENV)
  if sys.platform == 'linux':
    try:
      import ctypes  # pylint: disable=g-import-not-at-top
      ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
      pass
  return parent is None or os.getppid() == int(parent)


def _fail(message: str, code: int) -> int:
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.flush()
  print(f'{ERROR_PREFIX}{message}', file=sys.stderr, flush=True)
  return code


def _wait_for_previous_worker(point_dir: str) -> None:
  """Returns once no other process holds the point's lock (the trainer then takes it)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  if not Path(point_dir).exists():
    return
  try:
    with workdir_lib.locked(point_dir, 'sweep worker'):
      return
  except UserError as e:
    logging.warning('%s: waiting up to %.0f s for it to save and end', e, LOCK_WAIT_SECONDS)
  with workdir_lib.locked(point_dir, 'sweep worker', wait_seconds=LOCK_WAIT_SECONDS):
    pass


def run(spec_file: str) -> int:
  """Trains the spec's point; returns the exit status (see the module docstring)."""
  # Imported here: the launchers import this module without JAX.
  # pylint: disable=g-import-not-at-top
  from absl import logging
  from squeezenet_jax import runtime
  from squeezenet_jax.training import loop
  from squeezenet_jax.training.preemption import Preempted
  # pylint: enable=g-import-not-at-top
  if not _parent_alive():
    return 128 + signal.SIGTERM
  try:
    runtime.setup()
    spec = read_spec(spec_file)
    _wait_for_previous_worker(spec['workdir'])
    loop.train_and_evaluate(spec['config'], spec['workdir'],
                            allow_config_change=spec['allow_config_change'])
  except Preempted as e:
    logging.warning('%s', e)
    return e.exit_code
  except (UserError, WriteError, OSError) as e:
    return _fail(*user_facing(e))
  return EXIT_OK


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  code = run(flags.FLAGS.spec)
  if code in (EXIT_USER_ERROR, EXIT_WRITE_ERROR):
    sys.stdout.flush()
    # At once, as main.py: orbax's writer threads may never end after a failed write.
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('spec', None, 'The point spec written by the sweep launcher.')
  flags.mark_flag_as_required('spec')
  app.run(main)
