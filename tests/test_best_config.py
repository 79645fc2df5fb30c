"""configs/squeezenet_best.py: builds, trains at smoke scale, stays under 1 MB as int8."""

import json

import pytest

from configs import alexnet_best
from configs import squeezenet_best
from configs import tiny as tiny_lib
from squeezenet_jax import accounting
from squeezenet_jax import trained_run
from squeezenet_jax.modes import export
from squeezenet_jax.training import loop


def _smoke(config):
  """`config`'s recipe on configs/tiny.py's data, widths and schedule length."""
  tiny = tiny_lib.get_config()
  config.data = tiny.data
  for field in ('batch_size', 'eval_batch_size', 'num_epochs'):
    config[field] = tiny[field]
  for field in ('base_e', 'incr_e', 'squeeze_ratio'):
    config.model[field] = tiny.model[field]
  config.dtype = 'float32'  # bfloat16 convolutions are slow on CPU
  return config


def test_best_config_is_a_squeezenet_under_a_megabyte_as_int8():
  config = squeezenet_best.get_config()
  summary = accounting.summarize(config)
  assert config.model.name == 'squeezenet'
  assert all(not r['name'].startswith('fire') or r['name'].split('/')[1] in
             ('squeeze1x1', 'expand1x1', 'expand3x3', 'bypass', 'squeeze1x1/bn',
              'expand1x1/bn', 'expand3x3/bn') for r in summary['layers'])
  assert summary['total_params'] <= 1_000_000
  assert summary['bytes']['int8'] < 1_000_000


@pytest.mark.slow
def test_best_recipe_trains_and_exports_at_smoke_scale(tmp_path):
  results = loop.train_and_evaluate(_smoke(squeezenet_best.get_config()), str(tmp_path))
  assert 0.0 <= results['val_accuracy'] <= 1.0
  sizes = export.run(str(tmp_path), trained_run.config_for(str(tmp_path), 'export', {}))
  int8 = next(f for f in sizes['formats'] if f['format'] == 'int8')
  assert int8['bytes'] < 1_000_000
  assert json.loads((tmp_path / 'sizes.json').read_text())['formats']


def test_alexnet_gets_the_same_recipe():
  best, alex = squeezenet_best.get_config(), alexnet_best.get_config()
  assert alex.model.name == 'alexnet'
  for field in ('num_epochs', 'batch_size', 'optimizer', 'label_smoothing', 'dtype',
                'warmup_epochs', 'eval_tta'):
    assert alex[field] == best[field]
