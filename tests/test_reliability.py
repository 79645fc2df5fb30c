"""Preemption, kill -9, corrupt checkpoints, divergence and multi-process training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, restored_params, tiny_config
from squeezenet_jax import checkpoints
from squeezenet_jax.training import loop
from squeezenet_jax.errors import UserError
from test_main import TINY, error_line, run_main

# Long enough (about a second per epoch) to be interrupted mid-run.
EPOCHS = ['--config.num_epochs=6', '--config.data.synthetic_train_size=1152']
ONE_DEVICE = {'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}


def start_main(*args):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **ONE_DEVICE}
  return subprocess.Popen([sys.executable, 'main.py', *args], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(workdir: Path, epoch: int, process, timeout=240) -> None:
  deadline = time.time() + timeout
  metrics = workdir / 'metrics.jsonl'
  while time.time() < deadline and process.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= epoch:
      return
    time.sleep(0.05)
  raise AssertionError(f'epoch {epoch} never finished: {process.stderr.read()[-2000:]}')


def final_params(workdir: Path):
  return jax.tree.leaves(restored_params(workdir, tiny_config()))


def test_sigterm_and_kill_9_then_resume_equal_an_uninterrupted_run(tmp_path):
  straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
  assert run_main(*TINY, *EPOCHS, f'--workdir={straight}', env=ONE_DEVICE).returncode == 0

  # SIGTERM: finishes the epoch, saves, exits 128 + 15.
  process = start_main(*TINY, *EPOCHS, f'--workdir={interrupted}')
  wait_for_epoch(interrupted, 1, process)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 128 + signal.SIGTERM
  saved = checkpoints.Checkpointer(interrupted / 'checkpoints').latest_step()
  last_logged = json.loads((interrupted / 'metrics.jsonl').read_text().splitlines()[-1])
  assert saved == last_logged['step']

  # kill -9 mid-run: the committed checkpoints survive.
  process = start_main(*TINY, *EPOCHS, f'--workdir={interrupted}')
  wait_for_epoch(interrupted, len((interrupted / 'metrics.jsonl').read_text().splitlines()) + 1,
                 process)
  time.sleep(0.3)
  process.kill()
  process.wait()

  assert run_main(*TINY, *EPOCHS, f'--workdir={interrupted}', env=ONE_DEVICE).returncode == 0
  for a, b in zip(final_params(straight), final_params(interrupted)):
    np.testing.assert_array_equal(a, b)  # bitwise


def _corrupt(step_dir: Path) -> None:
  for file in (step_dir / 'model').rglob('*'):
    if file.is_file() and 'd' in file.relative_to(step_dir).parts[:-1]:
      file.write_bytes(b'\0' * 7)


def test_corrupt_checkpoint_is_named_and_fallback_resumes(tmp_path):
  config = tiny_config(num_epochs=2)
  loop.train_and_evaluate(config, str(tmp_path))
  steps = checkpoints.Checkpointer(tmp_path / 'checkpoints').all_steps()
  _corrupt(tmp_path / 'checkpoints' / str(steps[-1]))
  with pytest.raises(UserError, match=f'checkpoint .*/{steps[-1]} is corrupt.*--checkpoint_fallback'):
    loop.train_and_evaluate(config, str(tmp_path))
  results = loop.train_and_evaluate(config, str(tmp_path), checkpoint_fallback=True)
  assert results['steps'] == steps[-1]  # retrained the lost epoch from the previous step
  assert [p.name.split('-')[0] for p in (tmp_path / 'corrupt_checkpoints').iterdir()] == [
      str(steps[-1])]  # set aside, not deleted


def test_divergence_stops_with_the_last_good_checkpoint(tmp_path):
  config = tiny_config(num_epochs=3, learning_rate=1e12, warmup_epochs=0.0)
  with pytest.raises(UserError, match='diverged'):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'results.json').exists()


def test_two_processes_agree_with_one_process(tmp_path):
  """jax.distributed over localhost: 2 processes x 2 CPU devices == 1 process x 4.

  Two steps of 32 at full learning rate, as in test_train's 4-vs-1-device check: longer
  runs drift apart through float reduction order alone.
  """
  args = [*TINY, '--config.num_epochs=1', '--config.warmup_epochs=0',
          '--config.data.synthetic_train_size=192']
  two = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2', 'JAX_PLATFORMS': 'cpu'}
  port = 20000 + os.getpid() % 10000
  procs = [subprocess.Popen(
      [sys.executable, 'main.py', *args, f'--workdir={tmp_path / "multi"}',
       f'--coordinator_address=localhost:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=REPO_ROOT, env={**os.environ, **two}, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
  single = run_main(*args, f'--workdir={tmp_path / "single"}',
                    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=4'})
  assert single.returncode == 0, single.stderr[-2000:]
  multi = json.loads((tmp_path / 'multi' / 'results.json').read_text())
  one = json.loads((tmp_path / 'single' / 'results.json').read_text())
  assert multi['devices'].startswith('4x') and multi['steps'] == one['steps']
  assert multi['steps'] == 2
  train_loss = lambda run: json.loads(
      (tmp_path / run / 'metrics.jsonl').read_text().splitlines()[-1])['train_loss']
  np.testing.assert_allclose(train_loss('multi'), train_loss('single'), rtol=1e-5)
  for a, b in zip(final_params(tmp_path / 'multi'), final_params(tmp_path / 'single')):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
