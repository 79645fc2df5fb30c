"""benchmarks/gpu_run.sh, the device command, at smoke scale on the CPU: killed like a
GPU machine's limit kills it, then resumed; what it returns in $OUT.

This is CI's check that every step of the GPU run works: each step runs at tiny scale
through the command line, as on the GPU, with the carried wheels installed by the run
itself (PYTHONPATH is dropped).
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from benchmarks import reproduce
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow
# The device tool's limits on what comes back.
MAX_FILES = 8
NAME = re.compile(r'^[A-Za-z0-9._-]+$')


def _command(tmp_path, returned):
  env = dict(os.environ, OUT=str(returned), RUN_DIR=str(tmp_path / 'run'), SMOKE='1',
             T='3600', PYTHON=sys.executable, XDG_CACHE_HOME=str(tmp_path / 'cache'))
  env.pop('XLA_FLAGS', None)  # one CPU device, not conftest's four: faster
  env.pop('PYTHONPATH', None)  # the run installs what it lacks, as on the GPU machine
  return ['bash', str(REPO_ROOT / 'benchmarks' / 'gpu_run.sh')], env


def _records(directory):
  return {step: json.loads((directory / f'{step}.json').read_text())
          for step in reproduce.STEPS if (directory / f'{step}.json').exists()}


def _accuracy(x):
  return isinstance(x, float) and 0.0 <= x <= 1.0


def _check_trained(run, exports: bool):
  assert _accuracy(run['val_accuracy']) and _accuracy(run['val_accuracy_tta'])
  assert run['train_seconds'] > 0 and run['compile_seconds'] > 0
  assert run['wall_seconds'] > run['train_seconds']
  assert run['epochs'] == 1 and run['params'] > 0 and run['macs'] > 0
  if exports:
    for fmt in ('float32', 'int8', 'compressed', 'onnx', 'onnx_int8'):
      assert run['exports'][fmt]['bytes'] > 0 and _accuracy(run['exports'][fmt]['accuracy'])
    assert 'failed' not in run['exports']
    assert run['exports']['compressed']['bytes'] < run['exports']['float32']['bytes']


def _check_done(records):
  assert list(records) == list(reproduce.STEPS)
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


def _check_returned(returned):
  """What the device tool brings back: at most 8 plain files, flat, plain names."""
  files = sorted(returned.rglob('*'))
  assert len(files) <= MAX_FILES and all(f.is_file() and f.parent == returned for f in files)
  assert all(NAME.match(f.name) and not f.name.startswith('.') for f in files), files
  assert [f.name for f in files] == sorted(
      [f'{step}.json' for step in reproduce.STEPS] + ['logs.tgz', 'summary.md'])
  with tarfile.open(returned / 'logs.tgz') as archive:
    names = set(archive.getnames())
  for name in ('reproduce.log', 'logs/speed.log', 'logs/squeezenet.log',
               'work/preflight.json', 'work/squeezenet/results.json',
               'work/squeezenet/sizes.json', 'work/squeezenet/metrics.jsonl',
               'work/sweep_bypass/sweep.json'):
    assert name in names, (name, sorted(names))


def test_device_command_killed_then_resumed_returns_every_step(tmp_path):
  """Killed after its first step, the rerun skips it and does the rest; a third skips all."""
  returned = tmp_path / 'out'
  command, env = _command(tmp_path, returned)
  # Like the GPU machine's limit: the whole process group is killed, no warning.
  first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
  try:
    deadline = time.monotonic() + 900
    while not (returned / 'speed.json').exists() and first.poll() is None:
      assert time.monotonic() < deadline, 'the speed step did not finish in 900 s'
      time.sleep(0.5)
  finally:
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
  # Mirrored as soon as the step ended, before the command was killed.
  assert json.loads((returned / 'speed.json').read_text())['status'] == 'done'
  assert (returned / 'logs.tgz').exists() and not (returned / 'summary.md').exists()
  speed_bytes = (returned / 'speed.json').read_bytes()

  start = time.monotonic()
  second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
  smoke_seconds = time.monotonic() - start
  assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
  assert 'step speed: done in an earlier run, skipped' in second.stdout
  assert 'preflight: python' in second.stdout
  assert (returned / 'speed.json').read_bytes() == speed_bytes
  _check_returned(returned)
  records = _records(returned)
  _check_done(records)
  assert records == _records(tmp_path / 'run')
  summary = (returned / 'summary.md').read_text()
  for text in ('| Step |', 'Versions: python', 'jax ', 'Card:', 'seeds: mean ± std over 3',
               'sweep_versions: alexnet', 'sweep_bypass: model.bypass=complex',
               '--mode=export', 'eval_tta=true', 'benchmarks.benchmark'):
    assert text in summary, text
  print(f'smoke run after the kill (every step but speed): {smoke_seconds:.0f} s')

  third = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
  assert third.returncode == 0, third.stderr[-3000:]
  assert third.stdout.count('done in an earlier run, skipped') == len(reproduce.STEPS)
  assert _records(returned) == records
