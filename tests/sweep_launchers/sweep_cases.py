"""Shared by the launcher tests: a tiny seed sweep, its inline run, and probes.

The inline run is trained once per test session (whichever test asks first) and kept
in the session's base temp dir; every launcher's points are compared with it. All
runs share one compilation cache, so the workers reuse what the inline run compiled.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO_ROOT
from conftest import restored_params
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.sweep_launchers import worker

EPOCHS = 8  # of eight 32-image steps: long enough to be interrupted twice mid-point
NAMES = ('seed=0', 'seed=1')
CONFIG = f'''"""Seeds of a tiny SqueezeNet without BatchNorm (compiles fastest)."""

from configs import tiny
from squeezenet_jax.config_utils import product


def get_config():
  config = tiny.get_config()
  config.num_epochs = {EPOCHS}
  config.data.synthetic_train_size = 320
  config.data.synthetic_eval_size = 64
  config.data.val_size = 64
  config.model.batch_norm = False
  config.model.incr_e = 0  # every fire alike: fewer shapes for JAX to compile at init
  return config


def get_sweep():
  return product(seed=(0, 1))
'''


def config_file(basetemp: Path) -> Path:
  path = basetemp / 'seeds.py'
  if not path.exists():
    path.write_text(CONFIG)
  return path


def env(basetemp: Path) -> dict[str, str]:
  """Four CPU devices, as the pytest process has, and one shared compilation cache."""
  return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XDG_CACHE_HOME': str(basetemp / 'cache'),
          'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}


def sweep_args(basetemp: Path, workdir: Path, *flags: str) -> list[str]:
  return [sys.executable, 'main.py', '--mode=sweep', f'--config={config_file(basetemp)}',
          f'--workdir={workdir}', *flags]


def start_sweep(basetemp: Path, workdir: Path, *flags: str) -> subprocess.Popen:
  return subprocess.Popen(sweep_args(basetemp, workdir, *flags), cwd=REPO_ROOT,
                          env=env(basetemp), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def run_sweep(basetemp: Path, workdir: Path, *flags: str) -> subprocess.CompletedProcess:
  return subprocess.run(sweep_args(basetemp, workdir, *flags), cwd=REPO_ROOT,
                        env=env(basetemp), capture_output=True, text=True, timeout=600,
                        check=False)


def inline_sweep(basetemp: Path) -> Path:
  """The sweep trained inline (one point after another in main.py's process)."""
  workdir = basetemp / 'inline_sweep'
  report = workdir / 'sweep.json'
  if not report.exists() or json.loads(report.read_text())['pending']:
    result = run_sweep(basetemp, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def params(point_dir: Path) -> list:
  """The point's final parameters, from its latest checkpoint's `model` item."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.leaves(restored_params(point_dir, workdir_lib.load_config(str(point_dir))))


def epochs_logged(point_dir: Path) -> list[int]:
  path = point_dir / 'metrics.jsonl'
  if not path.exists():
    return []
  return [json.loads(line)['epoch'] for line in path.read_text().splitlines() if line]


def last_logged_step(point_dir: Path) -> int:
  lines = (point_dir / 'metrics.jsonl').read_text().splitlines()
  return json.loads(lines[-1])['step']


def committed_steps(point_dir: Path) -> list[int]:
  """Checkpoint steps orbax has committed (renamed from its temporary directory)."""
  directory = point_dir / 'checkpoints'
  if not directory.exists():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def worker_pids(workdir: Path) -> dict[str, int]:
  """The live worker processes of the sweep in `workdir`, by point name."""
  pids = {}
  for name in NAMES:
    wanted = f'--spec={worker.spec_path(workdir, name)}'.encode()
    for proc in Path('/proc').iterdir():
      try:
        cmdline = (proc / 'cmdline').read_bytes().split(b'\0')
        state = (proc / 'stat').read_text().rsplit(')', 1)[1].split()[0]
      except (OSError, ValueError, IndexError):
        continue
      if wanted in cmdline and state != 'Z':
        pids[name] = int(proc.name)
  return pids


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = condition()
    if value:
      return value
    if process.poll() is not None:
      raise AssertionError(f'the sweep ended (exit {process.returncode}) before {what}: '
                           f'{process.stderr.read()[-3000:]}')
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  raise AssertionError(f'timed out waiting for {what}')
