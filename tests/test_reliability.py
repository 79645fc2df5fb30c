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
from squeezenet_jax import trained_run
from squeezenet_jax.training import loop
from squeezenet_jax.errors import UserError
from test_main import TINY, error_line, run_main

pytestmark = pytest.mark.slow  # the quick tier leaves this file out

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
  # Meanwhile a second trainer on the same workdir is refused at once, naming the first.
  second = run_main(*TINY, *EPOCHS, f'--workdir={interrupted}', env=ONE_DEVICE)
  assert second.returncode == 2 and f'in use by pid {process.pid}' in error_line(second)
  time.sleep(0.3)
  process.kill()
  process.wait()

  assert run_main(*TINY, *EPOCHS, f'--workdir={interrupted}', env=ONE_DEVICE).returncode == 0
  for a, b in zip(final_params(straight), final_params(interrupted)):
    np.testing.assert_array_equal(a, b)  # bitwise
  # Epochs redone after the kill are logged once: the rows past the checkpoint were dropped.
  assert logged_epochs(interrupted) == list(range(1, 7))


def logged_epochs(workdir: Path) -> list[int]:
  return [json.loads(line)['epoch'] for line in
          (workdir / 'metrics.jsonl').read_text().splitlines()]


def _corrupt(step_dir: Path) -> None:
  for file in (step_dir / 'model').rglob('*'):
    if file.is_file() and 'd' in file.relative_to(step_dir).parts[:-1]:
      file.write_bytes(b'\0' * 7)


def test_corrupt_checkpoint_is_named_and_fallback_resumes(tmp_path):
  config = tiny_config(num_epochs=2)
  loop.train_and_evaluate(config, str(tmp_path))
  steps = checkpoints.Checkpointer(tmp_path / 'checkpoints').all_steps()
  _corrupt(tmp_path / 'checkpoints' / str(steps[-1]))
  # As if killed between the last save and results.json (a finished run is not reread).
  (tmp_path / 'results.json').unlink()
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


def test_two_processes_stop_together_when_one_is_signalled(tmp_path):
  """SIGTERM to process 1 only: both save the same step, exit 143, and resume together."""
  args = [*TINY, '--config.num_epochs=4', '--config.data.synthetic_train_size=704',
          f'--workdir={tmp_path}']
  two = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2', 'JAX_PLATFORMS': 'cpu'}

  def start(port):
    return [subprocess.Popen(
        [sys.executable, 'main.py', *args, f'--coordinator_address=localhost:{port}',
         '--num_processes=2', f'--process_id={i}'],
        cwd=REPO_ROOT, env={**os.environ, **two}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True) for i in range(2)]

  port = 21000 + os.getpid() % 9000
  procs = start(port)
  wait_for_epoch(tmp_path, 1, procs[0])
  procs[1].send_signal(signal.SIGTERM)
  codes = [p.wait(timeout=240) for p in procs]
  assert codes == [128 + signal.SIGTERM] * 2, [p.stderr.read()[-2000:] for p in procs]
  saved = checkpoints.Checkpointer(tmp_path / 'checkpoints').latest_step()
  assert saved == json.loads((tmp_path / 'metrics.jsonl').read_text().splitlines()[-1])['step']
  assert saved < 4 * 18  # stopped early
  procs = start(port + 1)
  for p in procs:
    assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
  assert logged_epochs(tmp_path) == list(range(1, 5))


def test_sigterm_stops_a_sweep_after_the_point_checkpoint(tmp_path):
  sweep_args = ['--mode=sweep', f'--config={tmp_path / "two_points.py"}', *EPOCHS,
                f'--workdir={tmp_path / "sweep"}']
  (tmp_path / 'two_points.py').write_text(
      'from configs import tiny\n'
      'def get_config():\n  return tiny.get_config()\n'
      'def get_sweep():\n  return [{"name": "a", "seed": 1}, {"name": "b", "seed": 2}]\n')
  process = start_main(*sweep_args)
  wait_for_epoch(tmp_path / 'sweep' / 'a', 1, process)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 128 + signal.SIGTERM, process.stderr.read()[-2000:]
  assert 'Traceback' not in process.stderr.read()
  assert checkpoints.Checkpointer(tmp_path / 'sweep' / 'a' / 'checkpoints').latest_step()
  assert json.loads((tmp_path / 'sweep' / 'sweep.json').read_text())['pending'] == ['a', 'b']


def test_a_newest_step_with_missing_files_is_one_line_and_fallback_is_quiet(tmp_path):
  loop.train_and_evaluate(tiny_config(num_epochs=2), str(tmp_path))
  steps = checkpoints.Checkpointer(tmp_path / 'checkpoints').all_steps()
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(tmp_path / 'checkpoints' / str(steps[-1]) / 'model' / 'd')
  args = ['--mode=eval', f'--workdir={tmp_path}', '--config.data.eval_split=validation']
  result = run_main(*args)
  assert result.returncode == 2 and f'/{steps[-1]} is corrupt' in error_line(result)
  assert 'Traceback' not in result.stderr and len(result.stderr.splitlines()) < 10
  result = run_main(*args, '--checkpoint_fallback')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr and len(result.stderr.splitlines()) < 10
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['val_checkpoint_step'] == steps[-2]


def test_eval_keeps_training_results_and_tta_gets_its_own_keys(tmp_path):
  config = tiny_config(num_epochs=3, eval_every_epochs=2)
  trained = loop.train_and_evaluate(config, str(tmp_path))
  # Epochs without an evaluation log no val_* (epoch 1); the last epoch always evaluates.
  events = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert ['val_accuracy' in e for e in events] == [False, True, True]
  from squeezenet_jax.modes import evaluate  # pylint: disable=g-import-not-at-top
  evaluate.run(str(tmp_path), trained_run.config_for(str(tmp_path), 'eval', {'data.eval_split': 'test'}))
  evaluate.run(str(tmp_path), trained_run.config_for(str(tmp_path), 'eval', {'data.eval_split': 'validation'}), tta=True)
  mirrored = json.loads((tmp_path / 'results.json').read_text())['val_loss_tta']
  rerun = loop.train_and_evaluate(config, str(tmp_path))  # finished: nothing to do
  assert {'test_accuracy', 'test_loss', 'val_accuracy_tta', 'val_loss_tta'} <= rerun.keys()
  # Shifted views as well: a different score under the same keys.
  evaluate.run(str(tmp_path), trained_run.config_for(
      str(tmp_path), 'eval', {'data.eval_split': 'validation', 'eval_tta_translate': 1}), tta=True)
  multi_crop = json.loads((tmp_path / 'results.json').read_text())['val_loss_tta']
  assert np.isfinite(multi_crop) and multi_crop != pytest.approx(mirrored, rel=1e-6)
  rerun = loop.train_and_evaluate(config, str(tmp_path))
  assert rerun['val_loss'] == pytest.approx(trained['val_loss'])
  assert json.loads((tmp_path / 'results.json').read_text()) == rerun


def test_a_finished_run_reruns_without_compiling_or_writing(tmp_path, monkeypatch):
  loop.train_and_evaluate(tiny_config(), str(tmp_path))
  files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*') if p.is_file()
           and p.name != '.lock'}
  from squeezenet_jax.training import trainer as trainer_lib  # pylint: disable=g-import-not-at-top

  def no_compile(*args):
    raise AssertionError('a finished run compiled its epoch')

  monkeypatch.setattr(trainer_lib.Trainer, 'compile_epoch', no_compile)
  assert loop.train_and_evaluate(tiny_config(), str(tmp_path))['steps'] == 12
  assert {p: p.stat().st_mtime_ns for p in files} == files
  assert sorted(p for p in tmp_path.rglob('*') if p.is_file() and p.name != '.lock') == sorted(
      files)


def test_a_run_that_never_finished_a_step_does_not_keep_its_workdir(tmp_path):
  diverging = tiny_config(learning_rate=1e12, warmup_epochs=0.0)
  with pytest.raises(UserError, match='diverged at epoch 1'):
    loop.train_and_evaluate(diverging, str(tmp_path))
  assert loop.train_and_evaluate(tiny_config(), str(tmp_path))['steps'] == 12


def _mount_tmpfs(path: Path, size: str) -> None:
  path.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                    capture_output=True, check=False).returncode:
    pytest.skip('needs mount (root) for a small or read-only file system')


@pytest.fixture
def tmpfs(tmp_path):
  mounted = []

  def mount(name: str, size: str = '50m') -> Path:
    path = tmp_path / name
    _mount_tmpfs(path, size)
    mounted.append(path)
    return path

  yield mount
  for path in mounted:
    subprocess.run(['umount', str(path)], check=False)


def test_a_full_disk_ends_the_run_with_one_line(tmpfs):
  full = tmpfs('full', '120k')
  start = time.monotonic()
  result = run_main(*TINY, '--config.num_epochs=3', f'--workdir={full / "w"}')
  assert result.returncode == 1 and 'No space left' in error_line(result)
  assert 'Traceback' not in result.stderr and time.monotonic() - start < 120


def test_a_read_only_workdir_fails_at_once_for_every_mode(tmp_path, tmpfs):
  loop.train_and_evaluate(tiny_config(), str(tmp_path / 'run'))
  disk = tmpfs('ro')
  subprocess.run(['cp', '-a', str(tmp_path / 'run'), str(disk)], check=True)
  subprocess.run(['mount', '-o', 'remount,ro', str(disk)], check=True)
  for args in (['--mode=export'], ['--mode=eval'], ['--mode=compress'],
               [*TINY, '--config.num_epochs=2']):
    result = run_main(*args, f'--workdir={disk / "run"}', timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Read-only file system' in error_line(result)


def test_ctrl_c_during_the_first_compile_is_one_line_and_exit_130(tmp_path):
  # An empty compilation cache: a program cached by an earlier test would skip the
  # compile, and the tiny run could end before the signal arrives.
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **ONE_DEVICE,
         'JAX_COMPILATION_CACHE_DIR': str(tmp_path / 'jax_cache')}
  process = subprocess.Popen([sys.executable, 'main.py', *TINY, f'--workdir={tmp_path / "run"}'],
                             cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  for line in process.stderr:
    if 'Compiling the train epoch' in line:
      break
  process.send_signal(signal.SIGINT)
  stderr = process.stderr.read()
  assert process.wait(timeout=120) == 130
  assert 'Traceback' not in stderr
  assert [l for l in stderr.splitlines() if l.startswith('error: ')] == [
      'error: interrupted; nothing of this command was saved beyond its last checkpoint']
