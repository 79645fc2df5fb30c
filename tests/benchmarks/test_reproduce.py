"""benchmarks/reproduce.py: budgets, estimates, partial records and the mirror.

The whole plan at smoke scale, through the device command, is test_gpu_run.py.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks import reproduce
from conftest import REPO_ROOT


def _records(out):
  return {step: json.loads((out / f'{step}.json').read_text()) for step in reproduce.STEPS
          if (out / f'{step}.json').exists()}


@pytest.mark.slow
def test_no_budget_skips_every_step_with_its_reason(tmp_path):
  out, mirrored = tmp_path / 'run', tmp_path / 'out'
  env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / 'cache'))
  done = subprocess.run([sys.executable, '-m', 'benchmarks.reproduce', '--smoke', f'--out={out}',
                         '--budget_seconds=1', f'--mirror={mirrored}'], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'preflight: python' in done.stdout and 'preflight: devices cpu' in done.stdout
  records = _records(out)
  assert [r['status'] for r in records.values()] == ['skipped'] * len(reproduce.STEPS)
  assert records['speed']['estimate_seconds'] == reproduce.SMOKE.speed_allowance
  # Nothing measured: estimated from the scale's fallback rate, not left unestimated.
  assert records['squeezenet']['estimate_seconds'] > 0
  assert 'estimated' in records['squeezenet']['reason']
  assert all(not r['commands'] for r in records.values())
  assert 'skipped: estimated 120 s' in (out / 'summary.md').read_text()
  assert sorted(p.name for p in mirrored.iterdir()) == sorted(
      [f'{step}.json' for step in reproduce.STEPS] + ['logs.tgz', 'summary.md'])


def test_a_preflight_that_fails_stops_the_run_in_one_line(tmp_path):
  out = tmp_path / 'run'
  done = subprocess.run([sys.executable, '-m', 'benchmarks.reproduce', f'--out={out}',
                         '--platform=gpu', '--data=README.md'], cwd=REPO_ROOT,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 2
  errors = [line for line in done.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and 'cuda' in errors[0].lower(), done.stderr
  assert not _records(out)  # no step was started


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
  # AlexNet is trained, not exported, in the full run; SqueezeNet is both.
  assert estimator.step('alexnet') == estimator.training(entry(100e6, params=36e6))
  assert estimator.step('squeezenet') == same + estimator.export(entry(10e6))
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
  # Nothing measured yet (the speed step failed): SqueezeNet at the fallback rate.
  fallback = reproduce.Estimator(scale, {}, plan)
  assert math.isclose(fallback.training(entry(10e6)), scale.process_allowance
                      + scale.compile_floor
                      + 10 * scale.fallback_train_images / scale.fallback_rate * validated)


def test_spread_over_seeds():
  stats = reproduce.spread([0.5, 0.7, None, 0.6])
  assert stats['n'] == 3 and math.isclose(stats['mean'], 0.6)
  assert math.isclose(stats['std'], 0.1) and stats['min'] == 0.5 and stats['max'] == 0.7
  assert reproduce.spread([]) == {'n': 0}


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


class _FakeRunner:
  """Runs nothing: 'trains' by writing results.json and config.json, and fails the
  export after it wrote sizes.json's first rows, as an ONNX failure would."""

  def __init__(self, work):
    self.work = work
    self.scale = reproduce.SMOKE
    self.saved = []

  def overrides(self, *extra):
    return reproduce.config_args({k: v for overrides in extra for k, v in overrides.items()})

  def run(self, step, argv, commands):
    workdir = next(a.split('=', 1)[1] for a in argv if a.startswith('--workdir='))
    workdir = reproduce.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    commands.append({'command': ' '.join(argv), 'returncode': 0, 'wall_seconds': 2.0})
    if '--mode=export' in argv:
      (workdir / 'sizes.json').write_text(json.dumps({
          'formats': [{'format': 'int8', 'bytes': 10, 'accuracy': 0.5, 'accuracy_delta': 0.0}],
          'failed_formats': [{'format': 'onnx', 'error': 'ModuleNotFoundError: jax2onnx'}]}))
      raise reproduce.StepFailed('exit status 2 of: main.py --mode=export')
    seed = int(next((a.split('=')[1] for a in argv if a.startswith('--config.seed=')), 0))
    (workdir / 'results.json').write_text(json.dumps({'val_accuracy': 0.25 + seed / 100,
                                                      'train_seconds': 1.0}))
    (workdir / 'config.json').write_text(json.dumps({'seed': seed}))
    if seed == 2:  # the second extra seed is cut by the budget
      raise reproduce.OutOfBudget('the budget ran out')
    return commands[-1]


def test_a_failed_export_or_a_cut_seed_keeps_what_was_trained(tmp_path):
  runner = _FakeRunner(tmp_path)
  steps = reproduce.Steps(runner, _Plan({'squeezenet': [{'seed': 0}]}))
  steps.plan.extra_seeds = lambda: [1, 2]
  record = {'commands': []}
  with pytest.raises(reproduce.StepFailed):
    steps.squeezenet(record)
  assert record['results']['val_accuracy'] == 0.25  # the training's figures stay
  assert record['results']['exports']['int8']['bytes'] == 10  # and the rows written
  assert record['results']['exports']['failed'][0]['format'] == 'onnx'
  seeds = {'commands': []}
  with pytest.raises(reproduce.OutOfBudget):
    steps.seeds(seeds)
  assert [run['seed'] for run in seeds['results']['runs']] == [1]  # seed 1 kept
