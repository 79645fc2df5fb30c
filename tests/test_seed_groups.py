"""Seed groups: points that differ only in `seed` as mean, sample std and n, in every report."""

import csv
import io
import math

import pytest

from conftest import tiny_config
from squeezenet_jax import config_utils
from squeezenet_jax import reporting
from squeezenet_jax import sweep_report
from squeezenet_jax import seed_groups
from squeezenet_jax import sweeps


def rows_for(points, accuracy):
  """sweep.json rows for `points`, as `sweeps.row` makes them, with made-up results."""
  return {p.name: {'name': p.name, 'overrides': p.overrides, 'values': p.values,
                   'batch_size': 32, 'params': 100 if p.values['model.bypass'] == 'none' else 120,
                   'analytic_params': 0, 'macs': 1000, 'checkpoint_bytes': 4000 + p.values['seed'],
                   'val_accuracy': accuracy(p.values), 'train_seconds': 10.0 + p.values['seed'],
                   'images_per_second': 50.0, 'epochs': 1, 'steps': 2} for p in points}


def bypass_by_seed():
  points = sweeps.make_points(tiny_config(), config_utils.product(
      {'model.bypass': ('none', 'simple'), 'seed': (0, 1, 2)}))
  rows = rows_for(points, lambda v: 0.5 + 0.1 * v['seed'] + 0.2 * (v['model.bypass'] == 'simple'))
  return points, rows


def test_seeds_of_each_bypass_become_one_row_with_mean_std_and_n():
  points, rows = bypass_by_seed()
  groups = sweeps.build_report(points, rows, {})['groups']
  assert groups['fields'] == ['model.bypass'] and not groups['grid']
  none, simple = groups['rows']
  assert [none['name'], simple['name']] == ['model.bypass=none', 'model.bypass=simple']
  assert none['values'] == {'model.bypass': 'none'} and none['seeds'] == [0, 1, 2]
  assert none['points'] == ['model.bypass=none,seed=0', 'model.bypass=none,seed=1',
                            'model.bypass=none,seed=2']
  assert none['n'] == 3
  assert none['val_accuracy_mean'] == pytest.approx(0.6)
  assert none['val_accuracy_std'] == pytest.approx(0.1)  # sample std of .5, .6, .7
  assert simple['val_accuracy_mean'] == pytest.approx(0.8)
  assert none['train_seconds_mean'] == pytest.approx(11.0)
  assert none['checkpoint_bytes_mean'] == pytest.approx(4001)
  assert none['params'] == 100 and simple['params'] == 120  # equal within a group: kept


def test_groups_count_finished_seeds_and_a_single_seed_has_no_spread():
  points, rows = bypass_by_seed()
  del rows['model.bypass=simple,seed=1'], rows['model.bypass=simple,seed=2']
  rows['model.bypass=none,seed=2']['params'] = 101  # differs within the group: dropped
  report = sweeps.build_report(points, rows, {})
  none, simple = report['groups']['rows']
  assert none['n'] == 3 and 'params' not in none
  assert simple['n'] == 1 and simple['val_accuracy_std'] is None
  assert '| model.bypass=simple | simple | 0 |' in sweep_report.sweep_markdown(report)
  assert '0.7000 (n=1)' in sweep_report.sweep_markdown(report)


def test_a_sweep_without_points_that_differ_only_in_seed_has_no_groups():
  for sweep in (config_utils.product({'model.bypass': ('none', 'simple')}),
                [{'model.bypass': 'none', 'seed': 0}, {'model.bypass': 'simple', 'seed': 1}]):
    points = sweeps.make_points(tiny_config(), sweep)
    rows = rows_for(points, lambda v: 0.5) if 'seed' in points[0].values else {}
    assert sweeps.build_report(points, rows, {})['groups'] is None


def test_only_seeds_swept_is_one_group_of_all_seeds():
  points = sweeps.make_points(tiny_config(), config_utils.product(seed=(0, 1)))
  rows = {p.name: {'name': p.name, 'overrides': p.overrides, 'values': p.values,
                   'val_accuracy': (0.25, 0.75)[p.values['seed']]} for p in points}
  [group] = sweeps.build_report(points, rows, {})['groups']['rows']
  assert group['name'] == 'all seeds' and group['val_accuracy_mean'] == 0.5
  assert math.isclose(group['val_accuracy_std'], math.sqrt(0.125))
  assert seed_groups.mean_std([]) == (None, None)


def test_table_csv_and_chart_show_mean_std_and_n(tmp_path, monkeypatch):
  points, rows = bypass_by_seed()
  report = sweeps.build_report(points, rows, {})
  table = sweep_report.sweep_markdown(report)
  assert '## Mean over seeds' in table and 'Val accuracy (mean ± std, n seeds)' in table
  assert '| model.bypass=none | none | 0, 1, 2 |' in table
  assert '0.6000 ± 0.1000 (n=3)' in table and '0.8000 ± 0.1000 (n=3)' in table
  assert '| model.bypass=simple,seed=2 | simple | 2 |' in table  # every point still listed
  parsed = list(csv.DictReader(io.StringIO(sweep_report.sweep_csv(report))))
  assert len(parsed) == 6
  assert parsed[4]['name'] == 'model.bypass=simple,seed=1'
  assert parsed[4]['group'] == 'model.bypass=simple' and parsed[4]['group_n'] == '3'
  assert float(parsed[4]['val_accuracy_mean']) == pytest.approx(0.8)
  assert float(parsed[4]['val_accuracy_std']) == pytest.approx(0.1)

  drawn = {}
  real_chart = reporting.scatter_chart
  monkeypatch.setattr(reporting, 'scatter_chart',
                      lambda path, series, **kw: drawn.update({path.name: (series, kw)})
                      or real_chart(path, series, **kw))
  sweep_report.write_sweep(tmp_path, report)
  assert set(drawn) == {'sweep.png'}  # seed is no axis of the charts: its spread is
  series, kwargs = drawn['sweep.png']
  plotted = [p for s in series for p in s.points]
  assert [(p.x, p.label) for p in plotted] == [(100, 'bypass=none (n=3)'),
                                               (120, 'bypass=simple (n=3)')]
  assert [p.y for p in plotted] == pytest.approx([0.6, 0.8])
  assert [p.yerr for p in plotted] == pytest.approx([0.1, 0.1])  # error bars
  assert 'standard deviation over seeds' in kwargs['subtitle']
  assert (tmp_path / 'sweep.png').read_bytes().startswith(b'\x89PNG')
