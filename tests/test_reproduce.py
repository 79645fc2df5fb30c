"""benchmarks/reproduce.py: the --smoke plan end to end, killed and resumed; estimates.

The smoke run is the CI check that every step of the GPU run works: it runs each step
at tiny scale on the CPU through the command line, as the GPU run will.
"""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from benchmarks import offline
from benchmarks import reproduce
from conftest import REPO_ROOT

TRAINED = ('squeezenet', 'alexnet')


def _env(tmp_path):
  env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / 'cache'), PYTHONUNBUFFERED='1')
  env.pop('XLA_FLAGS', None)  # one CPU device, not conftest's four: faster
  return env


def _command(out, *extra):
  return [sys.executable, '-m', 'benchmarks.reproduce', '--smoke', f'--out={out}', *extra]


def _records(out):
  return {step: json.loads((out / f'{step}.json').read_text()) for step in reproduce.STEPS
          if (out / f'{step}.json').exists()}


def _accuracy(x):
  return isinstance(x, float) and 0.0 <= x <= 1.0


def _check_trained(run, exports: bool):
  assert _accuracy(run['val_accuracy']) and _accuracy(run['val_accuracy_tta'])
  assert run['train_seconds'] > 0 and run['compile_seconds'] > 0
  assert run['wall_seconds'] > run['train_seconds']
  assert run['epochs'] == 1 and run['params'] > 0 and run['macs'] > 0
  if exports:
    for fmt in ('float32', 'int8', 'compressed'):
      assert run['exports'][fmt]['bytes'] > 0 and _accuracy(run['exports'][fmt]['accuracy'])
    assert run['exports']['compressed']['bytes'] < run['exports']['float32']['bytes']


def _check_done(records):
  assert set(records) == set(reproduce.STEPS)
  for step, record in records.items():
    assert record['status'] == 'done', (step, record.get('error') or record.get('reason'))
    assert record['scale'] == 'smoke' and record['commands'], step
    assert all(c['returncode'] == 0 for c in record['commands'])
  speed = records['speed']['results']
  assert speed['jax']['train_images_per_second'] > 0 and speed['jax']['compile_seconds'] > 0
  if importlib.util.find_spec('torch') is not None:  # else recorded as not available
    assert speed['torch']['train_images_per_second'] > 0
    assert speed['jax_over_torch_images_per_second'] > 0
  else:
    assert speed['torch']['skipped']
  _check_trained(records['squeezenet']['results'], exports=True)
  _check_trained(records['alexnet']['results'], exports=False)
  assert records['alexnet']['results']['params'] > 40 * records['squeezenet']['results']['params']
  seeds = records['seeds']['results']
  base = records['squeezenet']['results']['seed']
  assert [r['seed'] for r in seeds['runs']] == [base + 1, base + 2]
  for run in seeds['runs']:
    _check_trained(run, exports=False)
  assert seeds['over_three']['val_accuracy']['n'] == 3
  assert seeds['over_three']['seeds'] == [base, base + 1, base + 2]
  for step in reproduce.SWEEP_CONFIGS:
    results = records[step]['results']
    assert len(results['points']) == 3 and not results['pending'] and not results['failed']
    assert all(_accuracy(p['val_accuracy']) and p['params'] > 0 for p in results['points'])


def test_smoke_plan_killed_then_resumed_then_all_done(tmp_path):
  """Killed after the first step, the rerun skips it and does the rest; a third skips all."""
  out = tmp_path / 'run'
  env = _env(tmp_path)
  # Like the GPU machine's limit: the whole process group is killed, no warning.
  first = subprocess.Popen(_command(out, '--budget_seconds=3600'), cwd=REPO_ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
  try:
    deadline = time.monotonic() + 900
    while not (out / 'speed.json').exists() and first.poll() is None:
      assert time.monotonic() < deadline, 'the speed step did not finish in 900 s'
      time.sleep(0.5)
  finally:
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
  speed_bytes = (out / 'speed.json').read_bytes()
  assert json.loads(speed_bytes)['status'] == 'done'
  assert not (out / 'summary.md').exists()

  start = time.monotonic()
  second = subprocess.run(_command(out, '--budget_seconds=3600'), cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
  smoke_seconds = time.monotonic() - start
  assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
  assert 'step speed: done in an earlier run, skipped' in second.stdout
  assert (out / 'speed.json').read_bytes() == speed_bytes
  records = _records(out)
  _check_done(records)
  summary = (out / 'summary.md').read_text()
  for text in ('| Step |', 'Versions: python', 'jax ', 'Card:', 'seeds: mean ± std over 3',
               'sweep_versions: alexnet', 'sweep_bypass: model.bypass=complex',
               '--mode=export', 'eval_tta=true', 'benchmarks.benchmark'):
    assert text in summary, text
  print(f'smoke run after the kill (every step but speed): {smoke_seconds:.0f} s')

  third = subprocess.run(_command(out, '--budget_seconds=3600'), cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
  assert third.returncode == 0, third.stderr[-3000:]
  assert third.stdout.count('done in an earlier run, skipped') == len(reproduce.STEPS)
  assert _records(out) == records
  assert (out / 'summary.md').exists()


def test_no_budget_skips_every_step_with_its_reason(tmp_path):
  out = tmp_path / 'run'
  done = subprocess.run(_command(out, '--budget_seconds=1'), cwd=REPO_ROOT, env=_env(tmp_path),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  records = _records(out)
  assert [r['status'] for r in records.values()] == ['skipped'] * len(reproduce.STEPS)
  assert records['speed']['estimate_seconds'] == reproduce.SMOKE.speed_allowance
  assert 'speed step is not done' in records['squeezenet']['reason']
  assert all(not r['commands'] for r in records.values())
  assert 'skipped: estimated 120 s' in (out / 'summary.md').read_text()


def _rates_records(speed_rate=1000.0, macs=10e6):
  speed = {'status': 'done', 'commands': [], 'results': {
      'macs_per_image': macs, 'data': {'train_images': 1000},
      'jax': {'train_images_per_second': speed_rate, 'compile_seconds': 4.0}}}
  return {'speed': speed}


class _Plan:
  def __init__(self, trainings):
    self._trainings = trainings

  def info(self):
    return {'trainings': self._trainings}


def test_estimates_scale_by_macs_and_never_speed_up_smaller_models():
  scale = reproduce.FULL
  entry = lambda macs, epochs=10, params=1e6: {'macs': macs, 'num_epochs': epochs,
                                                'params': params, 'seed': 0, 'name': 'x'}
  plan = _Plan({'squeezenet': [entry(10e6)], 'alexnet': [entry(100e6, params=36e6)],
                'sweep_versions': [entry(5e6), entry(100e6)]})
  estimator = reproduce.Estimator(scale, _rates_records(), plan)
  compile_allowance = max(scale.compile_floor, scale.compile_factor * 4.0)
  validated = 1 + scale.validation_share
  same = estimator.training(entry(10e6))
  assert math.isclose(same, scale.process_allowance + compile_allowance
                      + 10 * 1000 / 1000.0 * validated)
  slower = 10 ** reproduce.MACS_EXPONENT  # 10x the MACs
  assert math.isclose(estimator.training(entry(100e6)) - same, (slower - 1) * 10 * validated)
  assert estimator.training(entry(5e6)) == same  # smaller: not assumed faster
  assert estimator.step('alexnet') > estimator.step('squeezenet')
  assert estimator.step('seeds') == 2 * same  # training scores TTA itself: no evaluations
  assert math.isclose(estimator.step('sweep_versions'),
                      estimator.training(entry(5e6)) + estimator.training(entry(100e6))
                      + scale.process_allowance)
  # Measured: the bigger model's own rate, overheads and compile times take over.
  records = _rates_records()
  records['alexnet'] = {'status': 'done', 'commands': [
      {'kind': 'train', 'wall_seconds': 100.0, 'train_seconds': 40.0, 'compile_seconds': 20.0},
      {'kind': 'eval', 'wall_seconds': 12.0}],
                        'results': {'macs': 100e6, 'images_per_second': 500.0,
                                    'train_seconds': 40.0}}
  measured = reproduce.Estimator(scale, records, plan)
  assert measured.overhead == reproduce.MEASURED_MARGIN * 40.0  # 100 - 40 - 20 > 12
  assert measured.compile == scale.compile_factor * 20.0
  assert math.isclose(measured.training(entry(100e6)),
                      measured.overhead + measured.compile + 10 * 1000 / 500.0 * validated)
  assert reproduce.Estimator(scale, {}, plan).step('alexnet') is None


def test_spread_over_seeds():
  stats = reproduce.spread([0.5, 0.7, None, 0.6])
  assert stats['n'] == 3 and math.isclose(stats['mean'], 0.6)
  assert math.isclose(stats['std'], 0.1) and stats['min'] == 0.5 and stats['max'] == 0.7
  assert reproduce.spread([]) == {'n': 0}


def _wheel(directory, name='reproduce_offline_probe', version='1.0'):
  """A minimal pure-Python wheel, so that the install needs no index and no network."""
  path = directory / f'{name}-{version}-py3-none-any.whl'
  info = f'{name}-{version}.dist-info'
  with zipfile.ZipFile(path, 'w') as wheel:
    wheel.writestr(f'{name}.py', 'VALUE = 42\n')
    wheel.writestr(f'{info}/METADATA', f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    wheel.writestr(f'{info}/WHEEL', 'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n'
                   'Tag: py3-none-any\n')
    wheel.writestr(f'{info}/RECORD', '')
  return path


def test_offline_installs_only_missing_wheels(tmp_path, monkeypatch):
  wheels = tmp_path / 'wheels'
  wheels.mkdir()
  probe = _wheel(wheels)
  jax_wheel = _wheel(wheels, name='jax', version='0.0.1')  # installed already: left alone
  site = tmp_path / 'site'
  monkeypatch.setattr(sys, 'path', list(sys.path))
  monkeypatch.setenv('PYTHONPATH', '')
  logged = []
  assert offline.ensure(wheels, site, logged.append) == [probe.name]
  assert jax_wheel.name not in logged[0] and (site / 'reproduce_offline_probe.py').exists()
  assert os.environ['PYTHONPATH'] == str(site)
  import reproduce_offline_probe  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  assert reproduce_offline_probe.VALUE == 42
  assert offline.ensure(wheels, site, logged.append) == []  # found in site: nothing to do
  sys.modules.pop('reproduce_offline_probe', None)


def test_offline_names_what_is_missing(tmp_path, monkeypatch):
  monkeypatch.setattr(offline, 'REQUIRED_MODULES', ('no_such_module_anywhere',))
  with pytest.raises(RuntimeError, match='no_such_module_anywhere.*prepare_offline.sh'):
    offline.ensure(tmp_path / 'none', tmp_path / 'site', print)


def test_a_command_running_into_the_budget_end_is_stopped_and_recorded(tmp_path):
  start = time.monotonic()
  runner = reproduce.Runner(tmp_path, reproduce.SMOKE, start, reproduce.SMOKE.grace + 2.0,
                            data={}, env=dict(os.environ), log=lambda line: None)
  commands = []
  with pytest.raises(reproduce.OutOfBudget):
    runner.run('step', [sys.executable, '-c', 'import time; time.sleep(60)'], commands)
  assert time.monotonic() - start < 15  # SIGTERM at the grace, not after 60 s
  assert commands[0]['returncode'] == -signal.SIGTERM
  with pytest.raises(reproduce.OutOfBudget, match='no budget left to start'):
    runner.run('step', [sys.executable, '-c', 'pass'], commands)
  assert len(commands) == 1
  ok = reproduce.Runner(tmp_path, reproduce.SMOKE, time.monotonic(), 100.0, data={},
                        env=dict(os.environ), log=lambda line: None)
  with pytest.raises(reproduce.StepFailed, match='exit status 3'):
    ok.run('step', [sys.executable, '-c', 'print("to the log"); raise SystemExit(3)'], commands)
  assert 'to the log' in (tmp_path / 'logs' / 'step.log').read_text()
