"""Tests for optim: the learning-rate schedules' shape, and a bad choice refused."""

import jax
import ml_collections
import numpy as np
import pytest

from squeezenet_jax.training import optim


def _config(schedule, warmup_epochs=1.0):
  return ml_collections.ConfigDict({'num_epochs': 10, 'warmup_epochs': warmup_epochs,
                                    'learning_rate': 0.4, 'lr_schedule': schedule})


@pytest.mark.parametrize('schedule', optim.SCHEDULES)
def test_schedules_warm_up_to_the_peak_and_end_at_zero(schedule):
  lr = optim.make_schedule(_config(schedule), steps_per_epoch=10)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(float(lr(5)), 0.2, rtol=1e-6)
  np.testing.assert_allclose(float(lr(10)), 0.4, rtol=1e-6)
  np.testing.assert_allclose(float(lr(100)), 0.0, atol=1e-7)


def test_linear_decays_linearly_and_cosine_stays_above_it():
  linear = optim.make_schedule(_config('linear'), steps_per_epoch=10)
  cosine = optim.make_schedule(_config('cosine', warmup_epochs=0.0), steps_per_epoch=10)
  np.testing.assert_allclose(float(linear(55)), 0.2, rtol=1e-6)  # halfway down 10..100
  np.testing.assert_allclose(float(cosine(50)), 0.2, rtol=1e-6)
  assert float(cosine(25)) > 0.3


def test_linear_without_warmup_starts_at_the_peak():
  lr = optim.make_schedule(_config('linear', warmup_epochs=0.0), steps_per_epoch=10)
  np.testing.assert_allclose(float(lr(0)), 0.4, rtol=1e-6)




def _one_step(optimizer, scale):
  """The update of one SGD or AdamW step on a BN offset, a BN scale and a kernel."""
  config = ml_collections.ConfigDict({
      'num_epochs': 1, 'warmup_epochs': 0.0, 'learning_rate': 0.1,
      'lr_schedule': 'linear', 'optimizer': optimizer, 'momentum': 0.9,
      'weight_decay': 5e-4, 'bn_bias_lr_scale': scale})
  tx = optim.make_optimizer(config, steps_per_epoch=10).tx
  params = {'conv1': {'bn': {'bias': np.ones(4, np.float32), 'scale': np.ones(4, np.float32)},
                      'conv': {'kernel': np.ones((3, 3, 2, 4), np.float32)}}}
  grads = jax.tree.map(lambda p: np.full_like(p, 0.5), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


@pytest.mark.parametrize('optimizer', optim.OPTIMIZERS)
def test_bn_bias_lr_scale_scales_only_the_batch_norm_offsets(optimizer):
  plain, scaled = _one_step(optimizer, 1.0), _one_step(optimizer, 64.0)
  np.testing.assert_allclose(scaled['conv1']['bn']['bias'],
                             64 * plain['conv1']['bn']['bias'], rtol=1e-6)
  assert np.all(plain['conv1']['bn']['bias'] != 0)
  for path in (('bn', 'scale'), ('conv', 'kernel')):
    a, b = (u['conv1'][path[0]][path[1]] for u in (plain, scaled))
    np.testing.assert_array_equal(a, b)


def test_the_offsets_mask_finds_every_batch_norm_offset_of_the_model():
  from configs import default  # pylint: disable=g-import-not-at-top
  from squeezenet_jax.training import trainer  # pylint: disable=g-import-not-at-top
  _, variables = trainer.init_model(default.get_config())
  flat = jax.tree_util.tree_flatten_with_path(optim._batch_norm_offsets(variables['params']))[0]
  chosen = {jax.tree_util.keystr(path) for path, offset in flat if offset}
  assert len(chosen) == 25  # conv1 and the three convs of each of the eight Fires
  assert all("['bn']['bias']" in name for name in chosen)
