"""`--sweep_launcher=ray` on a local Ray instance: a killed worker is retried and resumes."""

import json
import os
import signal

import numpy as np
import pytest

import sweep_cases
from squeezenet_jax.errors import UserError
from squeezenet_jax.sweep_launchers import ray_tasks
from squeezenet_jax.sweep_launchers import worker

pytest.importorskip('ray')


@pytest.mark.slow
def test_ray_retries_a_killed_worker_and_ends_with_the_inline_parameters(tmp_path_factory):
  base = tmp_path_factory.getbasetemp()
  inline_dir = sweep_cases.inline_sweep(base)
  workdir = base / 'ray'
  process = sweep_cases.start_sweep(base, workdir, '--sweep_launcher=ray')
  point = workdir / 'seed=0'
  sweep_cases.wait_for(lambda: sweep_cases.committed_steps(point), process,
                       'a checkpoint of the first point')
  os.kill(sweep_cases.worker_pids(workdir)['seed=0'], signal.SIGKILL)
  assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]

  report = json.loads((workdir / 'sweep.json').read_text())
  assert [p['name'] for p in report['points']] == list(sweep_cases.NAMES)
  assert not report['pending'] and not report['failed']
  # Ray ran the killed point's task again, which resumed from its checkpoint.
  log = worker.log_path(workdir, 'seed=0').read_text()
  assert log.count('worker started') == 2, log[-3000:]
  assert sweep_cases.epochs_logged(point) == list(range(1, sweep_cases.EPOCHS + 1))
  for name in sweep_cases.NAMES:
    for a, b in zip(sweep_cases.params(workdir / name), sweep_cases.params(inline_dir / name),
                    strict=True):
      np.testing.assert_array_equal(a, b)  # bitwise


def test_gpu_shares_are_checked_and_capped(monkeypatch):
  monkeypatch.setenv('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # what the launcher sets
  with pytest.raises(UserError, match='give 0 or more'):
    ray_tasks.RayLauncher(gpus_per_point=-1)
  with pytest.raises(UserError, match='above 1, give whole GPUs'):
    ray_tasks.RayLauncher(gpus_per_point=1.5)
  launcher = ray_tasks.RayLauncher(gpus_per_point=0.25)
  assert launcher._gpus(8) == 0.25  # pylint: disable=protected-access
  with pytest.raises(UserError, match='the Ray cluster has 0 GPUs'):
    launcher._gpus(0)  # pylint: disable=protected-access
  assert ray_tasks.RayLauncher()._gpus(0) == 0  # pylint: disable=protected-access
  assert ray_tasks.worker_env(0.25, {}) == {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false',
                                            'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.225'}
  assert ray_tasks.worker_env(0, {'XLA_FLAGS': 'x'}) == {'JAX_PLATFORMS': 'cpu',
                                                         'XLA_FLAGS': 'x'}
