"""formats.py: each weight format read back as what was written, within its encoding."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs import default
from conftest import tiny_config
from squeezenet_jax import checkpoints
from squeezenet_jax import formats
from squeezenet_jax import models
from squeezenet_jax.errors import UserError


def _random_model(config, seed=0):
  """numpy params and batch_stats shaped like `config`'s model."""
  _, params, batch_stats = nnx.split(models.abstract_model(config), nnx.Param, nnx.BatchStat)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(scale=0.05, size=x.shape).astype(np.float32),
                      {'params': nnx.to_pure_dict(params),
                       'batch_stats': nnx.to_pure_dict(batch_stats)})


# Largest error of a read-back kernel against the original (weights ~ N(0, 0.05)).
_TOLERANCE = {'float32': 0.0, 'bfloat16': 1e-3, 'int8': 2e-3, 'compressed': 0.1}


@pytest.mark.parametrize('fmt', formats.WEIGHTS)
def test_a_weight_format_reads_back_as_float32_close_to_what_was_written(tmp_path, fmt):
  config = tiny_config()
  model = _random_model(config)
  formats.write(fmt, model, tmp_path / fmt, config.export)
  loaded = formats.read(tmp_path / fmt)
  assert jax.tree.structure(loaded) == jax.tree.structure(model)
  errors = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), loaded['params'],
                        model['params'])
  assert max(jax.tree.leaves(errors)) <= _TOLERANCE[fmt]
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(loaded))
  # BatchNorm statistics are stored as they are.
  jax.tree.map(np.testing.assert_array_equal, loaded['batch_stats'], model['batch_stats'])
  formats.check_matches(config, loaded, tmp_path / fmt)


def test_weights_of_another_model_are_refused(tmp_path):
  model = _random_model(tiny_config(**{'model.base_e': 32}))
  formats.write('float32', model, tmp_path / 'float32', tiny_config().export)
  with pytest.raises(UserError, match='weights of another model'):
    formats.check_matches(tiny_config(), formats.read(tmp_path / 'float32'), tmp_path)


def test_a_row_holds_the_bytes_on_disk_and_the_scores(tmp_path):
  directory = tmp_path / 'int8'
  formats.write('int8', _random_model(tiny_config()), directory, tiny_config().export)
  row = formats.row('int8', directory, {'accuracy': 0.5, 'loss': 1.0}, bits=8)
  assert row == {'format': 'int8', 'bytes': checkpoints.directory_bytes(directory),
                 'accuracy': 0.5, 'loss': 1.0, 'path': 'exports/int8', 'bits': 8}


@pytest.mark.parametrize('batch_norm', [False, True])
def test_int8_squeezenet_1_1_is_under_a_megabyte_on_disk(tmp_path, batch_norm):
  config = default.get_config()  # SqueezeNet 1.1, CIFAR stem, 10 classes
  config.model.batch_norm = batch_norm
  tree = _random_model(config)
  if not batch_norm:  # the paper's model
    assert sum(x.size for x in jax.tree.leaves(tree['params'])) == 727_626
  formats.write('int8', tree, tmp_path / 'int8', config.export)
  assert checkpoints.directory_bytes(tmp_path / 'int8') < 1_000_000
  loaded = formats.read(tmp_path / 'int8')
  assert jax.tree.structure(loaded) == jax.tree.structure(tree)
