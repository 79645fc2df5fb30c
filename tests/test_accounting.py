"""Analytic parameter/MAC accounting against the built models, and summary.json."""

import itertools
import json

import pytest

from configs import default
from squeezenet_jax import accounting
from squeezenet_jax.modes import summary


def make_config(**model_fields):
  config = default.get_config()
  model_fields.setdefault('batch_norm', False)  # the paper's (and torchvision's) layout
  for key, value in model_fields.items():
    config.model[key] = value
  config.data.image_size = 224 if config.model.stem == 'imagenet' else 32
  return config


SQUEEZENET_VARIANTS = list(itertools.product(
    ['1.0', '1.1'], ['imagenet', 'cifar'], ['none', 'simple', 'complex'],
    [False, True]))


@pytest.mark.parametrize('version, stem, bypass, batch_norm', SQUEEZENET_VARIANTS)
def test_squeezenet_analytic_equals_counted(version, stem, bypass, batch_norm):
  s = accounting.summarize(make_config(
      version=version, stem=stem, bypass=bypass, batch_norm=batch_norm))
  assert s['analytic_params'] == s['total_params']  # summarize also checks
  assert (s['batch_norm_params'] > 0) == batch_norm
  assert s['batch_stats'] == s['batch_norm_params']


@pytest.mark.parametrize('stem, batch_norm',
                         list(itertools.product(['imagenet', 'cifar'], [False, True])))
def test_alexnet_analytic_equals_counted(stem, batch_norm):
  s = accounting.summarize(make_config(name='alexnet', stem=stem,
                                       batch_norm=batch_norm))
  assert s['analytic_params'] == s['total_params']
  assert [r['name'] for r in s['layers'] if r['type'] != 'bn'] == [
      'conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8']


@pytest.mark.parametrize('version', ['1.0', '1.1'])
def test_bypass_param_costs(version):
  none, simple, complex_ = (
      accounting.summarize(make_config(version=version, bypass=b))
      for b in ('none', 'simple', 'complex'))
  assert simple['total_params'] == none['total_params']
  bypass_rows = [r for r in complex_['layers'] if r['name'].endswith('/bypass')]
  assert [r['name'] for r in bypass_rows] == [
      'fire2/bypass', 'fire4/bypass', 'fire6/bypass', 'fire8/bypass']
  # A 1x1 conv with bias from the fire's input to its output channels.
  assert all(r['params'] == (r['in_channels'] + 1) * r['filters'] for r in bypass_rows)
  assert complex_['total_params'] - none['total_params'] == sum(
      r['params'] for r in bypass_rows)


def test_formulas_on_known_layers():
  s = accounting.summarize(make_config(version='1.0', stem='imagenet',
                                       num_classes=1000))
  rows = {r['name']: r for r in s['layers']}
  conv1 = rows['conv1']  # 96 7x7/2 on 224 -> 109x109
  assert conv1['params'] == (7 * 7 * 3 + 1) * 96
  assert conv1['macs'] == 7 * 7 * 3 * 96 * 109 * 109
  assert rows['fire2/expand3x3']['params'] == (3 * 3 * 16 + 1) * 64
  assert rows['classifier/conv10']['out_size'] == [13, 13]
  assert s['total_params'] == 1_248_424
  assert s['bytes'] == {'float32': 4 * 1_248_424, 'bfloat16': 2 * 1_248_424,
                        'int8': 1_248_424}
  # torchvision's squeezenet1_0 is documented at 0.82 GFLOPS (= GMACs) per image.
  assert 0.80e9 < s['macs'] < 0.84e9


def test_without_the_stem_pool_the_parameters_stay_and_the_maps_double():
  pooled = accounting.summarize(make_config(stem='cifar', batch_norm=True))
  full = accounting.summarize(make_config(stem='cifar', batch_norm=True, stem_pool=False))
  assert full['total_params'] == full['analytic_params'] == pooled['total_params']
  sizes = lambda s: {r['name']: r['out_size'] for r in s['layers'] if r['type'] == 'conv'}
  assert sizes(pooled)['classifier/conv10'] == [4, 4]
  assert sizes(full)['classifier/conv10'] == [8, 8]
  assert sizes(full)['fire2/squeeze1x1'] == [32, 32]
  assert 3.5 < full['macs'] / pooled['macs'] < 4.0  # conv1's MACs are unchanged


def test_batch_norm_accounting():
  plain = accounting.summarize(make_config())
  bn = accounting.summarize(make_config(batch_norm=True))
  bn_rows = [r for r in bn['layers'] if r['type'] == 'bn']
  assert bn_rows[0]['name'] == 'conv1/bn'
  assert all(r['params'] == 2 * r['in_channels'] for r in bn_rows)
  # BN replaces the bias of each conv it follows: +2C params, -C biases.
  assert bn['total_params'] - plain['total_params'] == sum(
      r['in_channels'] for r in bn_rows)


def test_format_table_lists_layers_and_totals():
  s = accounting.summarize(make_config())
  table = accounting.format_table(s)
  assert 'fire9/expand3x3' in table and 'classifier/conv10' in table
  assert f"{s['total_params']:,}" in table and 'MB (MB = 10^6 bytes)' in table and 'MiB' not in table


def test_summary_run_writes_interface_keys(tmp_path, capsys):
  workdir = tmp_path / 'run'
  result = summary.run(make_config(), str(workdir))
  assert 'fire2/squeeze1x1' in capsys.readouterr().out
  written = json.loads((workdir / 'summary.json').read_text())
  assert written == result
  for key in ('layers', 'total_params', 'analytic_params', 'macs', 'bytes'):
    assert key in written
  for key in ('name', 'kernel', 'stride', 'in_channels', 'filters', 'out_size',
              'params', 'macs'):
    assert key in written['layers'][0]
  assert set(written['bytes']) == {'float32', 'bfloat16', 'int8'}
  assert written['total_params'] == 727_626
