"""Model shapes, parameter counts, train/eval behaviour and config errors."""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deploy_helpers
from configs import default
from squeezenet_jax import accounting
from squeezenet_jax import models
from squeezenet_jax.errors import UserError


# Narrow Fire modules: the same layers, compiled in seconds (behaviour, not sizes).
NARROW = {'base_e': 16, 'incr_e': 16, 'squeeze_ratio': 0.5}


def make_config(dtype='float32', **model_fields):
  config = default.get_config()
  model_fields.setdefault('batch_norm', False)  # the paper's (and torchvision's) layout
  config.dtype = dtype
  for key, value in model_fields.items():
    config.model[key] = value
  return config


def abstract_model(config):
  return models.abstract_model(config)


def random_model(config):
  """A model holding deploy_helpers' numpy-drawn weights: eager nnx initialisation
  compiles every parameter's initialiser, most of a test's time on a CPU."""
  graphdef, params, stats = nnx.split(abstract_model(config), nnx.Param, nnx.BatchStat)
  values = deploy_helpers.random_model(config)
  nnx.replace_by_pure_dict(params, values['params'])
  nnx.replace_by_pure_dict(stats, values['batch_stats'])
  return nnx.merge(graphdef, params, stats)


def output_shape(config, image_size):
  image = jax.ShapeDtypeStruct((2, image_size, image_size, 3), jnp.float32)
  return nnx.eval_shape(lambda m, x: m(x), abstract_model(config), image)


@pytest.mark.parametrize('name, version, stem, classes, expected', [
    # torchvision's squeezenet1_0 / squeezenet1_1 / alexnet.
    ('squeezenet', '1.0', 'imagenet', 1000, 1_248_424),
    ('squeezenet', '1.1', 'imagenet', 1000, 1_235_496),
    ('squeezenet', '1.0', 'imagenet', 10, 740_554),
    ('squeezenet', '1.1', 'imagenet', 10, 727_626),
    ('alexnet', '1.1', 'imagenet', 1000, 61_100_840),
    # CIFAR stems: 3x3 conv1 (v1.0 saves 7*7*3*96 - 3*3*3*96 = 11,520).
    ('squeezenet', '1.0', 'cifar', 10, 729_034),
    ('squeezenet', '1.1', 'cifar', 10, 727_626),
    ('alexnet', '1.1', 'cifar', 10, 36_051_786),
])
def test_param_counts(name, version, stem, classes, expected):
  config = make_config(name=name, version=version, stem=stem, num_classes=classes)
  assert accounting.count_params(abstract_model(config)) == expected


V10_WIDTHS = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
              (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]


def test_fire_widths_defaults_are_v10():
  assert models.fire_widths(make_config().model) == V10_WIDTHS


@pytest.mark.parametrize('pct3x3', [0.01, 0.99])
def test_extreme_pct3x3_builds(pct3x3):
  config = make_config(pct3x3=pct3x3)
  widths = models.fire_widths(config.model)
  assert all(min(w) >= 1 for w in widths)
  assert output_shape(config, 32).shape == (2, 10)


@pytest.mark.parametrize('field, value', [
    ('freq', 0), ('pct3x3', 0.0), ('pct3x3', 1.0), ('squeeze_ratio', 0.0),
    ('base_e', 1),
])
def test_bad_metaparameters(field, value):
  with pytest.raises(UserError):
    models.fire_widths(make_config(**{field: value}).model)


@pytest.mark.parametrize('name, version, stem, image_size, spatial', [
    ('squeezenet', '1.0', 'imagenet', 224, [109, 54, 54, 54, 27, 27, 27, 27, 13]),
    ('squeezenet', '1.1', 'imagenet', 224, [111, 55, 55, 27, 27, 13, 13, 13, 13]),
    ('squeezenet', '1.0', 'cifar', 32, [32, 16, 16, 16, 8, 8, 8, 8, 4]),
    ('squeezenet', '1.1', 'cifar', 32, [32, 16, 16, 8, 8, 4, 4, 4, 4]),
])
def test_spatial_sizes_match_torchvision(name, version, stem, image_size, spatial):
  """conv1 then the squeeze conv of fire2..fire9, with ceil-mode pools between."""
  config = make_config(name=name, version=version, stem=stem)
  records = accounting.trace_layers(abstract_model(config), image_size)
  sizes = {r.name: r.out_size for r in records}
  names = ['conv1'] + [f'fire{i}/squeeze1x1' for i in range(2, 10)]
  assert [sizes[n][0] for n in names] == spatial
  assert sizes['classifier/conv10'] == (spatial[-1], spatial[-1])


@pytest.mark.parametrize('name, stem, image_size, classes', [
    ('squeezenet', 'imagenet', 224, 1000),
    ('squeezenet', 'cifar', 32, 10),
    ('alexnet', 'imagenet', 224, 1000),
    ('alexnet', 'cifar', 32, 10),
])
def test_output_shapes(name, stem, image_size, classes):
  config = make_config(name=name, stem=stem, num_classes=classes)
  out = output_shape(config, image_size)
  assert (out.shape, out.dtype) == ((2, classes), jnp.float32)


def test_max_pool_ceil_mode_pads_with_minus_inf():
  x = -jnp.arange(16.0).reshape(1, 4, 4, 1)  # all <= 0: a zero pad would show
  out = models.max_pool(x, ceil_mode=True)
  np.testing.assert_array_equal(out[0, :, :, 0], [[0, -2], [-8, -10]])
  assert models.max_pool(x, ceil_mode=False).shape == (1, 1, 1, 1)


def test_adaptive_avg_pool_matches_torch_bins():
  x = jnp.arange(49.0).reshape(1, 7, 7, 1)
  out = models.adaptive_avg_pool(x, 6)[0, :, :, 0]
  expected = [[x[0, i:i + 2, j:j + 2, 0].mean() for j in range(6)] for i in range(6)]
  np.testing.assert_allclose(out, expected)


def test_image_too_small_is_user_error():
  config = make_config(name='alexnet', stem='imagenet')
  with pytest.raises(UserError, match='image_size'):
    output_shape(config, 32)


@pytest.mark.slow
def test_real_forward_imagenet_v11():
  config = make_config(stem='imagenet', num_classes=1000)
  model = models.create_model(config, rngs=nnx.Rngs(0))
  logits = nnx.jit(lambda m, x: m(x))(model, jnp.ones((1, 224, 224, 3)))
  assert logits.shape == (1, 1000) and bool(jnp.all(jnp.isfinite(logits)))


def test_train_step_in_jit_updates_batch_stats_and_uses_dropout():
  """The trainer's path: split/merge inside jit, dropout keyed by a raw PRNG key."""
  config = make_config(batch_norm=True, bypass='complex', **NARROW)
  model = random_model(config)
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))

  @functools.partial(jax.jit, static_argnames='train')
  def forward(params, stats, key, train):
    m = nnx.merge(graphdef, params, stats)
    logits = m(x, train=train, rngs=key)
    return logits, nnx.state(m, nnx.BatchStat)

  train_a, new_stats = forward(params, stats, jax.random.key(2), True)
  train_b, _ = forward(params, stats, jax.random.key(3), True)
  eval_logits, eval_stats = forward(params, stats, jax.random.key(2), False)
  assert train_a.shape == (4, 10) and train_a.dtype == jnp.float32
  assert not np.allclose(train_a, train_b)  # dropout depends on the key
  assert not np.allclose(train_a, eval_logits)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), stats, new_stats)
  assert all(jax.tree.leaves(changed))
  unchanged = jax.tree.map(np.allclose, stats, eval_stats)
  assert all(jax.tree.leaves(unchanged))


@pytest.mark.parametrize('rngs', [nnx.Rngs(0), nnx.Rngs(dropout=1), jax.random.key(0)])
def test_alexnet_train_accepts_rngs_or_key(rngs):
  config = make_config(name='alexnet', batch_norm=True)
  image = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  out = nnx.eval_shape(lambda m, x, r: m(x, train=True, rngs=r),
                       abstract_model(config), image, rngs)
  assert out.shape == (2, 10)


def test_dropout_keys_differ_per_layer():
  k1, k2 = models._dropout_keys(jax.random.key(0), 2)
  assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))


def test_bfloat16_compute_gives_float32_logits_and_params():
  config = make_config(dtype='bfloat16', batch_norm=True, **NARROW)
  forward = nnx.jit(lambda m, x, key: m(x, train=True, rngs=key))
  logits = forward(random_model(config), jnp.ones((2, 32, 32, 3)), jax.random.key(0))
  assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
  param_dtypes = {p.dtype for p in jax.tree.leaves(nnx.state(abstract_model(config), nnx.Param))}
  assert param_dtypes == {jnp.dtype(jnp.float32)}


def test_bypass_structure():
  """simple: identity on fire3/5/7/9; complex: plus 1x1 convs on fire2/4/6/8."""
  simple = abstract_model(make_config(bypass='simple'))
  complex_ = abstract_model(make_config(bypass='complex'))
  for fire in range(2, 10):
    odd = fire % 2 == 1
    assert getattr(simple, f'fire{fire}').identity == odd
    assert getattr(simple, f'fire{fire}').bypass is None
    assert getattr(complex_, f'fire{fire}').identity == odd
    assert (getattr(complex_, f'fire{fire}').bypass is None) == odd


def test_classifier_relu_off_keeps_the_parameters_and_lets_logits_go_negative():
  """The classic classifier ends in a ReLU, so every logit is >= 0; without it, the
  same weights give the pre-ReLU logits."""
  config = make_config(**NARROW)
  with_relu = random_model(config)
  config.model.classifier_relu = False
  without = random_model(config)
  params = lambda m: jax.tree.leaves(nnx.state(m, nnx.Param))
  for a, b in zip(params(with_relu), params(without)):
    np.testing.assert_array_equal(a, b)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
  assert float(jnp.min(with_relu(x))) >= 0.0
  assert float(jnp.min(without(x))) < 0.0
  # The ReLU is applied per position before the global mean: relu(z) >= z everywhere.
  assert np.all(np.asarray(with_relu(x)) >= np.asarray(without(x)) - 1e-6)


def test_simple_bypass_with_mismatched_channels_is_user_error():
  with pytest.raises(UserError, match='fire3'):
    abstract_model(make_config(bypass='simple', freq=1))
  abstract_model(make_config(bypass='complex', freq=1))  # convs cover it


@pytest.mark.parametrize('shape', [(2, 33, 33, 3), (3, 9, 9, 2), (1, 8, 10, 4)])
def test_window_max_is_a_max_pool_with_its_gradient(shape):
  """The training pool on CPU: reduce_window's values, and its gradient (to each
  window's first maximum), also where ReLU zeros tie."""
  x = jax.random.normal(jax.random.key(0), shape)
  x = x.at[0].set(jnp.maximum(x[0], 0.0))  # ties at zero
  pool = lambda x: nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='VALID')
  fast = lambda x: models.window_max(x, 3, 2)
  np.testing.assert_array_equal(fast(x), pool(x))
  cotangent = jax.random.normal(jax.random.key(1), pool(x).shape)
  grad = lambda f: jax.vjp(f, x)[1](cotangent)[0]
  np.testing.assert_allclose(grad(fast), grad(pool), rtol=1e-6, atol=1e-6)
