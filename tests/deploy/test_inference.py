"""inference: BatchNorm folded into the convs, and the uint8-in, logits-out function."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from conftest import tiny_config
from deploy_helpers import random_images
from deploy_helpers import random_model
from squeezenet_jax import models
from squeezenet_jax.data import augment
from squeezenet_jax.deploy import inference
from squeezenet_jax.errors import UserError
from squeezenet_jax.training import steps


def assert_close(actual, expected):
  """Equal up to float32 rounding: 1e-5 of the logits' scale (random models reach 100s)."""
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * scale)


def eval_logits(config, model, images):
  """The trainer's eval-mode logits of the unfolded model (BatchNorm on running stats)."""
  graphdef, params, batch_stats = nnx.split(
      models.abstract_model(config),
      nnx.Param, nnx.BatchStat)
  nnx.replace_by_pure_dict(params, model['params'])
  nnx.replace_by_pure_dict(batch_stats, model['batch_stats'])
  return np.asarray(jax.jit(steps.make_eval_logits(graphdef, config))(params, batch_stats, images))


@pytest.mark.parametrize('overrides', [
    {'model.batch_norm': True},
    {'model.batch_norm': False},
    {'model.batch_norm': True, 'model.bypass': 'complex'},
], ids=['bn', 'no-bn', 'bn-complex-bypass'])
def test_folded_function_equals_the_model_in_eval_mode(overrides):
  config = tiny_config(**overrides)
  model = random_model(config)
  images = random_images(16, seed=2)
  expected = eval_logits(config, model, images)
  logits = np.asarray(jax.jit(inference.logits_fn(config, model))(images))
  assert logits.dtype == np.float32 and logits.shape == (16, config.model.num_classes)
  assert_close(logits, expected)


def test_folded_model_has_no_batch_norm_and_conv_biases():
  config = tiny_config(**{'model.batch_norm': True, 'dtype': 'bfloat16'})
  folded_config, params = inference.fold_batch_norm(config, random_model(config))
  assert not folded_config.model.batch_norm and folded_config.dtype == 'float32'
  assert config.model.batch_norm and config.dtype == 'bfloat16'  # the run's config untouched
  names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  assert not any("'bn'" in n for n in names)
  assert "['conv1']['conv']['bias']" in names
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))


def test_bfloat16_runs_deploy_in_float32():
  """A run trained with bfloat16 compute still deploys as float32 inference."""
  config = tiny_config(**{'dtype': 'bfloat16'})
  model = random_model(config)
  images = random_images(8, seed=6)
  float32 = ml_collections.ConfigDict(config.to_dict())
  float32.dtype = 'float32'
  assert_close(np.asarray(inference.logits_fn(config, model)(images)),
               eval_logits(float32, model, images))


def test_normalisation_comes_from_the_config_when_it_has_one():
  config = tiny_config()
  model = random_model(config)
  images = random_images(4, seed=8).clip(0, 245)
  mean, std = augment.statistics(config.data)
  shifted = ml_collections.ConfigDict(config.to_dict())
  shifted.data.mean = tuple(m - 10 for m in mean)
  shifted.data.std = std
  # Under a mean 10 lower, pixels 10 lower normalise to the same values.
  assert_close(np.asarray(inference.logits_fn(shifted, model)(images)),
               np.asarray(inference.logits_fn(config, model)(images + 10)))


def test_a_checkpoint_of_another_model_is_refused():
  model = random_model(tiny_config())
  with pytest.raises(UserError, match='another model'):
    inference.fold_batch_norm(tiny_config(**{'model.base_e': 32}), model)


def test_batched_logits_pad_the_last_batch_and_compile_once():
  config = tiny_config()
  logits = inference.logits_fn(config, random_model(config))
  images = random_images(11, seed=9)
  traced = []
  counting = lambda x: traced.append(x.shape) or logits(x)
  batched = inference.batched_logits(counting, images, batch_size=4)
  assert traced == [(4, 32, 32, 3)]  # 4 + 4 + 3 (padded to 4): one trace
  assert_close(batched, np.asarray(jax.jit(logits)(images)))
  assert inference.batched_logits(logits, images[:0]).shape == (0, 10)
