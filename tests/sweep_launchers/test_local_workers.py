"""`--sweep_workers`: points side by side in worker processes, equal to the inline sweep."""

import json
import os
import signal
import sys
import threading

import numpy as np
import pytest

import sweep_cases
from conftest import tiny_config
from squeezenet_jax import sweep_launchers
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.modes import sweep
from squeezenet_jax.sweep_launchers import inline
from squeezenet_jax.sweep_launchers import local
from squeezenet_jax.sweep_launchers import worker


@pytest.mark.slow
def test_stopped_and_killed_workers_resume_to_the_inline_parameters(tmp_path_factory):
  """Two workers: SIGTERM to the sweep; a rerun with one worker SIGKILLed; a last rerun.

  SIGTERM: every worker saves where it stopped and the sweep exits 143. SIGKILL of a
  worker mid-point: the other point still finishes, the killed one is reported. The
  last rerun resumes it; each point ends with the inline sweep's parameters, bit for bit.
  """
  base = tmp_path_factory.getbasetemp()
  inline_dir = sweep_cases.inline_sweep(base)
  workdir = base / 'workers'
  dirs = [workdir / name for name in sweep_cases.NAMES]

  # 1. SIGTERM once both points train side by side (each has a checkpoint).
  process = sweep_cases.start_sweep(base, workdir, '--sweep_workers=2')
  sweep_cases.wait_for(lambda: all(sweep_cases.committed_steps(d) for d in dirs), process,
                       'a checkpoint of both points')
  assert len(sweep_cases.worker_pids(workdir)) == 2
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 128 + signal.SIGTERM, process.stderr.read()[-3000:]
  assert not sweep_cases.worker_pids(workdir)  # none left behind
  stopped_at = {}
  for point_dir in dirs:  # each saved where it stopped, before the end
    if (point_dir / 'results.json').exists():
      continue  # a loaded machine may let one point finish before the signal
    stopped_at[point_dir] = sweep_cases.committed_steps(point_dir)[-1]
    assert stopped_at[point_dir] == sweep_cases.last_logged_step(point_dir)
    assert sweep_cases.epochs_logged(point_dir)[-1] < sweep_cases.EPOCHS
  assert stopped_at, 'both points finished before SIGTERM: nothing was stopped'
  report = json.loads((workdir / 'sweep.json').read_text())
  assert set(report['pending']) == {p.name for p in stopped_at} and not report['failed']

  # 2. Rerun; SIGKILL a stopped point's worker once it saved a step beyond the stop.
  killed = next(iter(stopped_at))
  finishing = next(d for d in dirs if d != killed)
  process = sweep_cases.start_sweep(base, workdir, '--sweep_workers=2')
  sweep_cases.wait_for(lambda: sweep_cases.committed_steps(killed)[-1] > stopped_at[killed],
                       process, 'a new checkpoint of the stopped point')
  os.kill(sweep_cases.worker_pids(workdir)[killed.name], signal.SIGKILL)
  assert process.wait(timeout=120) == 2
  assert process.stderr.read().strip().splitlines()[-1].startswith(
      f'error: 1 of 2 sweep points failed: {killed.name}: its worker was killed by SIGKILL')
  assert not (killed / 'results.json').exists() and (finishing / 'results.json').exists()
  report = json.loads((workdir / 'sweep.json').read_text())
  assert report['pending'] == [killed.name] and 'killed by SIGKILL' in report['failed'][
      killed.name]

  # 3. The last rerun resumes the killed point.
  rerun = sweep_cases.run_sweep(base, workdir, '--sweep_workers=2')
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  report = json.loads((workdir / 'sweep.json').read_text())
  assert [p['name'] for p in report['points']] == list(sweep_cases.NAMES)
  assert not report['pending'] and not report['failed']
  assert report['groups']['rows'][0]['n'] == 2
  seeds_differ = [sweep_cases.params(inline_dir / name)[0] for name in sweep_cases.NAMES]
  assert not np.array_equal(*seeds_differ)  # so that equal parameters mean something
  for name in sweep_cases.NAMES:
    epochs = sweep_cases.epochs_logged(workdir / name)
    assert epochs == list(range(1, sweep_cases.EPOCHS + 1))  # resumed, each epoch once
    assert sorted(os.listdir(workdir / name)) == sorted(os.listdir(inline_dir / name))
    assert (workdir / name / 'config.json').read_text() == (
        inline_dir / name / 'config.json').read_text()
    for a, b in zip(sweep_cases.params(workdir / name), sweep_cases.params(inline_dir / name),
                    strict=True):
      np.testing.assert_array_equal(a, b)  # bitwise


def test_a_failing_point_fails_alone_with_its_error_line(tmp_path, monkeypatch):
  monkeypatch.setenv('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # what the launcher sets
  # Too few training images for a batch: found in the worker once the data is loaded.
  points = [{'data.synthetic_train_size': 140}, {'data.synthetic_train_size': 150}]
  with pytest.raises(UserError, match='2 of 2 sweep points failed: .*batch_size=32 exceeds'):
    sweep.run(tiny_config(), str(tmp_path), points, launcher=local.LocalProcesses(2))
  report = json.loads((tmp_path / 'sweep.json').read_text())
  assert list(report['failed']) == ['data.synthetic_train_size=140',
                                    'data.synthetic_train_size=150']
  assert report['failed']['data.synthetic_train_size=140'].startswith('batch_size=32 exceeds')
  log = worker.log_path(tmp_path, 'data.synthetic_train_size=140').read_text()
  assert 'error: batch_size=32 exceeds' in log
  assert not (tmp_path / 'data.synthetic_train_size=140').exists()  # as inline: nothing


def test_worker_envs_split_gpus_share_them_or_copy_the_cpu_device_count():
  four = ['0', '1', '2', '3']
  assert local.worker_envs(2, 'gpu', four, {}) == [
      {'CUDA_VISIBLE_DEVICES': '0,1'}, {'CUDA_VISIBLE_DEVICES': '2,3'}]
  assert local.worker_envs(3, 'gpu', four, {}) == [
      {'CUDA_VISIBLE_DEVICES': '0'}, {'CUDA_VISIBLE_DEVICES': '1'},
      {'CUDA_VISIBLE_DEVICES': '2'}]
  shared = local.worker_envs(5, 'gpu', ['4', '6'], {})
  assert [e['CUDA_VISIBLE_DEVICES'] for e in shared] == ['4', '6', '4', '6', '4']
  assert [e['XLA_PYTHON_CLIENT_MEM_FRACTION'] for e in shared] == ['0.3', '0.45', '0.3',
                                                                   '0.45', '0.3']
  assert all(e['XLA_PYTHON_CLIENT_PREALLOCATE'] == 'false' for e in shared)
  # A user's fraction is what the workers on one GPU share.
  assert local.worker_envs(4, 'gpu', ['0'], {'XLA_PYTHON_CLIENT_MEM_FRACTION': '.8'})[
      0]['XLA_PYTHON_CLIENT_MEM_FRACTION'] == '0.2'
  assert local.worker_envs(2, 'cpu', four, {'XLA_FLAGS': '--xla_foo=1 '
                           '--xla_force_host_platform_device_count=8'}) == [
      {'XLA_FLAGS': '--xla_foo=1 --xla_force_host_platform_device_count=4'}] * 2
  with pytest.raises(UserError, match='not on tpu'):
    local.worker_envs(2, 'tpu', four, {})


def test_outcome_names_how_a_worker_ended(tmp_path):
  log = tmp_path / 'w.log'
  log.write_text('I1130 something\nerror: data.path /x does not exist\n')
  assert worker.outcome(0, log) is None
  assert worker.outcome(2, log) == 'data.path /x does not exist'
  assert 'killed by SIGKILL' in worker.outcome(-9, log)
  assert 'stopped by SIGTERM' in worker.outcome(143, log)
  assert worker.outcome(143, log, stopping=signal.SIGTERM) == worker.STOPPED
  assert worker.outcome(-15, log, stopping=signal.SIGINT) == worker.STOPPED
  log.write_text('Traceback (most recent call last):\n  ...\nMemoryError: out of memory\n')
  assert 'crashed (exit 1): MemoryError: out of memory' in worker.outcome(1, log)


def test_launcher_flags_are_checked(monkeypatch):
  monkeypatch.setenv('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # what the launcher sets
  assert sweep_launchers.make_launcher('local', 1) is inline.run
  assert isinstance(sweep_launchers.make_launcher('local', 3), local.LocalProcesses)
  with pytest.raises(UserError, match='--sweep_workers=0'):
    sweep_launchers.make_launcher('local', 0)
  with pytest.raises(UserError, match='need --sweep_launcher=ray'):
    sweep_launchers.make_launcher('local', 2, gpus_per_point=0.5)
  monkeypatch.setitem(sys.modules, 'ray', None)  # as if not installed
  with pytest.raises(UserError, match='needs Ray: pip install -r requirements-ray.txt'):
    sweep_launchers.make_launcher('ray')


def test_spec_round_trips_the_resolved_config(tmp_path):
  config = tiny_config(seed=3, **{'model.bypass': 'simple', 'learning_rate': 0.1})
  path = worker.spec_path(tmp_path, 'p')
  worker.write_spec(path, config, str(tmp_path / 'p'), allow_config_change=True)
  spec = worker.read_spec(path)
  assert spec['config'].to_json() == config.to_json()
  assert spec['workdir'] == str(tmp_path / 'p') and spec['allow_config_change']


def test_a_workdir_lock_can_wait_for_its_holder(tmp_path):
  """What a worker does when an earlier worker of its point is still saving."""
  holder = workdir_lib.locked(tmp_path, 'train')
  holder.__enter__()
  with pytest.raises(UserError, match=r'in use by pid \d+ .*\(train, since'):
    with workdir_lib.locked(tmp_path, 'sweep worker', wait_seconds=0.3):
      pass
  threading.Timer(0.5, holder.__exit__, (None, None, None)).start()
  with workdir_lib.locked(tmp_path, 'sweep worker', wait_seconds=30):
    assert json.loads((tmp_path / '.lock').read_text())['purpose'] == 'sweep worker'
