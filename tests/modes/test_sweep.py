"""Sweeps: a 2x2 grid trains, survives a crash, skips finished points and resumes."""

import importlib
import json
import shutil
import subprocess
import sys
import types

import pytest

from conftest import REPO_ROOT, tiny_config
from squeezenet_jax import config_utils
from squeezenet_jax import sweeps
from squeezenet_jax.modes import sweep
from squeezenet_jax.training import loop
from squeezenet_jax.errors import UserError

pytestmark = pytest.mark.slow  # the quick tier leaves this file out

GRID = config_utils.product({'model.bypass': ('none', 'simple'),
                      'model.squeeze_ratio': (0.25, 0.5)})
NAMES = ['model.bypass=none,model.squeeze_ratio=0.25',
         'model.bypass=none,model.squeeze_ratio=0.5',
         'model.bypass=simple,model.squeeze_ratio=0.25',
         'model.bypass=simple,model.squeeze_ratio=0.5']
SHIPPED = ('versions', 'bypass', 'squeeze_ratio', 'pct3x3', 'recipe:r1', 'recipe:r2', 'recipe:r3', 'recipe:r4')


def grid_config():
  """Two epochs of two 32-image steps (64 of the 128 images are held out).

  Without BatchNorm each point compiles in two thirds of the time; what is learnt
  does not matter here.
  """
  return tiny_config(num_epochs=2, **{'data.synthetic_train_size': 128,
                                      'data.synthetic_eval_size': 64,
                                      'data.val_size': 64,
                                      'model.batch_norm': False})


def epochs_logged(point_dir):
  lines = (point_dir / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(line)['epoch'] for line in lines]


@pytest.fixture(scope='module')
def grid(tmp_path_factory):
  """The grid run twice: crashing in its third point, then to the end."""
  workdir = tmp_path_factory.mktemp('grid')
  real_train = loop.train_and_evaluate
  trained = []

  def crash_on_third_point(config, point_dir, **kwargs):
    if len(trained) == 2:
      raise RuntimeError('simulated crash')
    trained.append(point_dir)
    return real_train(config, point_dir, **kwargs)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, 'train_and_evaluate', crash_on_third_point)
    with pytest.raises(RuntimeError, match='simulated crash'):
      sweep.run(grid_config(), str(workdir), GRID)
  after_crash = json.loads((workdir / 'sweep.json').read_text())
  trained.clear()
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, 'train_and_evaluate',
               lambda config, point_dir, **kw: trained.append(point_dir) or real_train(
                   config, point_dir, **kw))
    report = sweep.run(grid_config(), str(workdir), GRID)
  return types.SimpleNamespace(workdir=workdir, after_crash=after_crash,
                               trained_on_rerun=trained, report=report)


def test_grid_writes_the_table_and_charts(grid):
  report = json.loads((grid.workdir / 'sweep.json').read_text())
  assert report == grid.report
  assert [p['name'] for p in report['points']] == NAMES
  assert report['fields'] == ['model.bypass', 'model.squeeze_ratio'] and report['grid']
  for point in report['points']:
    assert point['params'] == point['analytic_params'] > 0
    assert point['macs'] > 0 and point['checkpoint_bytes'] > 0
    assert 0 <= point['val_accuracy'] <= 1 and point['train_seconds'] > 0
    assert point['images_per_second'] > 0 and point['epochs'] == 2
  assert report['points'][0]['overrides'] == {'model.bypass': 'none',
                                              'model.squeeze_ratio': 0.25}
  # Wider squeezes hold more parameters.
  assert report['points'][0]['params'] < report['points'][1]['params']
  rows = (grid.workdir / 'sweep.csv').read_text().splitlines()
  assert rows[0].startswith('name,model.bypass,model.squeeze_ratio,params,')
  assert len(rows) == 5 and rows[3].startswith(f'"{NAMES[2]}",simple,0.25,')
  table = (grid.workdir / 'sweep.md').read_text()
  assert all(f'| {name} |' in table for name in NAMES) and '4 of 4 points' in table
  assert '| Point | model.bypass | model.squeeze_ratio | Params |' in table
  for chart in ('sweep.png', 'sweep_model.bypass.png', 'sweep_model.squeeze_ratio.png'):
    assert (grid.workdir / chart).read_bytes().startswith(b'\x89PNG')


def test_a_crash_keeps_finished_points_and_the_rerun_trains_only_the_rest(grid):
  assert [p['name'] for p in grid.after_crash['points']] == NAMES[:2]
  assert grid.after_crash['pending'] == NAMES[2:]
  assert grid.trained_on_rerun == [str(grid.workdir / name) for name in NAMES[2:]]


def test_rerun_skips_finished_points(grid, monkeypatch):
  metrics = {n: (grid.workdir / n / 'metrics.jsonl').read_text() for n in NAMES}

  def fail(*args, **kwargs):
    raise AssertionError('a finished point was trained again')

  monkeypatch.setattr(loop, 'train_and_evaluate', fail)
  assert sweep.run(grid_config(), str(grid.workdir), GRID)['points'] == grid.report['points']
  assert {n: (grid.workdir / n / 'metrics.jsonl').read_text() for n in NAMES} == metrics


def test_interrupted_point_resumes_from_its_checkpoint(grid):
  point_dir = grid.workdir / NAMES[-1]
  assert epochs_logged(point_dir) == [1, 2]
  # As if killed after the epoch-1 checkpoint: no results, no last checkpoint.
  (point_dir / 'results.json').unlink()
  shutil.rmtree(max((point_dir / 'checkpoints').glob('[0-9]*'), key=lambda p: int(p.name)))
  report = sweep.run(grid_config(), str(grid.workdir), GRID)
  assert epochs_logged(point_dir) == [1, 2]  # epoch 2 redone (not epoch 1), logged once
  assert epochs_logged(grid.workdir / NAMES[0]) == [1, 2]
  assert [p['name'] for p in report['points']] == NAMES and not report['pending']


@pytest.mark.parametrize('points, message', [
    ([{'model.bypass': 'simple'}, {'model.bypas': 'complex'}],
     r'sweep point 2 \(model.bypas=complex\) sets unknown field model.bypas '
     r'\(did you mean model.bypass\?\)'),
    ([{'model.bypass': 'none'}, {'model.bypass': 'sideways'}],
     r"sweep point 2 \(model.bypass=sideways\): config field model.bypass='sideways' is not allowed"),
    ([{'model': 'small'}], 'a group of fields'),
    ([{'model.squeeze_ratio': 'half'}], 'takes a float'),
    ([{'name': 'a', 'seed': 1}, {'name': 'a', 'seed': 2}], 'needs a name of its own'),
    ([], 'non-empty list'),
])
def test_bad_sweep_fails_before_anything_runs(tmp_path, points, message):
  with pytest.raises(UserError, match=message):
    sweep.run(tiny_config(), str(tmp_path / 'sweep'), points)
  assert not (tmp_path / 'sweep').exists()


def test_a_failing_point_does_not_stop_the_others(tmp_path):
  # Too few training images for a batch: found once the data is loaded, before compiling.
  points = [{'data.synthetic_train_size': 140}, {'data.synthetic_train_size': 150}]
  with pytest.raises(UserError, match='2 of 2 sweep points failed: .*exceeds'):
    sweep.run(tiny_config(), str(tmp_path), points)
  report = json.loads((tmp_path / 'sweep.json').read_text())
  assert list(report['failed']) == report['pending'] == [
      'data.synthetic_train_size=140', 'data.synthetic_train_size=150']
  assert 'failed: batch_size=32 exceeds' in (tmp_path / 'sweep.md').read_text()


def test_a_point_directory_of_another_config_is_refused_before_anything_runs(tmp_path):
  point_dir = tmp_path / 'model.bypass=simple'
  point_dir.mkdir()
  (point_dir / 'config.json').write_text(tiny_config(seed=7).to_json())
  (point_dir / 'results.json').write_text('{}')  # a run with results: worth keeping
  with pytest.raises(UserError, match=r'sweep point 2 .* another config \(differs in '
                     r'model.bypass, seed\)'):
    sweep.run(tiny_config(), str(tmp_path), config_utils.product({'model.bypass': ('none', 'simple')}))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['model.bypass=simple']


def test_command_line_may_not_set_a_swept_field(tmp_path):
  with pytest.raises(UserError, match='--config.model.bypass is swept'):
    sweep.run(tiny_config(), str(tmp_path), GRID, fixed={'model.bypass': 'none'})


def test_main_reports_a_bad_point_in_one_line(tmp_path):
  config_file = tmp_path / 'typo.py'
  config_file.write_text(
      'from configs import default\n\n\n'
      'def get_config():\n  return default.get_config()\n\n\n'
      "def get_sweep():\n  return [{'model.bypass': 'none'}, {'model.bypas': 'simple'}]\n")
  proc = subprocess.run(
      [sys.executable, 'main.py', '--mode=sweep', f'--config={config_file}',
       f'--workdir={tmp_path / "sweep"}', '--config.data.source=synthetic',
       '--config.num_epochs=1'],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: sweep point 2 (model.bypas=simple) sets unknown field model.bypas '
      '(did you mean model.bypass?)')
  assert not (tmp_path / 'sweep').exists()


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_sweep_loads_and_every_point_builds(tmp_path, name):
  name, *arg = name.split(':')  # `file.py:arg` passes arg to get_config and get_sweep
  module = importlib.import_module(f'configs.sweeps.{name}')
  config_file = ':'.join([str(REPO_ROOT / 'configs' / 'sweeps' / f'{name}.py'), *arg])
  points = sweeps.make_points(module.get_config(*arg), sweeps.load_sweep(config_file))
  assert len(points) >= 3
  for point in points:
    sweep.check_point(point, tmp_path / point.name)  # builds the model abstractly


def test_product_varies_the_first_axis_slowest_and_names_points():
  assert config_utils.product({'a.b': (1, 2)}, c=('x', 'y')) == [
      {'a.b': 1, 'c': 'x'}, {'a.b': 1, 'c': 'y'}, {'a.b': 2, 'c': 'x'}, {'a.b': 2, 'c': 'y'}]
  assert sweeps.point_name({'model.bypass': 'simple', 'seed': 3}) == 'model.bypass=simple,seed=3'
  assert sweeps.point_name({'name': '../v 1.0', 'seed': 3}) == '_v_1.0'
