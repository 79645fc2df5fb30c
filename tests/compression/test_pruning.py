"""Gradual magnitude pruning: the schedule, the masks, and zeros that stay zero in training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from compression_fixtures import tiny_params
from compression_fixtures import toy_step
from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import plan
from squeezenet_jax.compression import pruning


@pytest.fixture(scope='module')
def params():
  return tiny_params()


def _kernels(tree):
  return [np.asarray(x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
          if quantize.is_kernel(path)]


def test_schedule_is_cubic_from_initial_at_begin_to_final_at_end():
  schedule = pruning.Schedule(final_sparsity=0.8, initial_sparsity=0.2, begin_step=10,
                              end_step=110, frequency=10)
  values = jax.jit(jax.vmap(schedule))(jnp.arange(1001))
  at = lambda step: float(values[step])
  assert at(0) == at(9) == 0.0  # nothing pruned before begin
  assert at(10) == pytest.approx(0.2)
  assert at(110) == at(1000) == pytest.approx(0.8)
  assert at(60) == pytest.approx(0.8 - 0.6 * 0.5**3)  # halfway: 1/8 of the way left
  assert at(61) == at(69) == at(60)  # held between updates every 10 steps
  assert np.all(np.diff(values) >= 0)
  updates = np.flatnonzero(jax.jit(jax.vmap(schedule.is_update))(jnp.arange(1001)))
  np.testing.assert_array_equal(updates, np.arange(10, 111, 10))
  # The sparsity only changes where the masks update.
  assert set(np.flatnonzero(np.diff(values)) + 1) <= set(updates)
  # end - begin need not be a multiple of the frequency: the end still updates.
  ragged = jax.jit(jax.vmap(pruning.Schedule(final_sparsity=0.5, end_step=25, frequency=10)))(
      jnp.array([20, 24, 25]))
  assert ragged[0] == ragged[1] < 0.5 == pytest.approx(float(ragged[2]))
  ragged_updates = jax.vmap(pruning.Schedule(final_sparsity=0.5, end_step=25,
                                             frequency=10).is_update)(jnp.arange(40))
  np.testing.assert_array_equal(np.flatnonzero(ragged_updates), [0, 10, 20, 25])


def test_layer_masks_prune_each_kernel_and_global_masks_one_threshold(params):
  layer = pruning.magnitude_masks(params, 0.6, 'layer')
  for w, keep in zip(_kernels(params), _kernels(layer)):
    assert (~keep).sum() == round(0.6 * w.size)
    assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min()
  glob = pruning.magnitude_masks(params, 0.6, 'global')
  weights = np.concatenate([w.ravel() for w in _kernels(params)])
  keep = np.concatenate([m.ravel() for m in _kernels(glob)])
  assert (~keep).sum() == round(0.6 * weights.size)
  assert np.abs(weights[~keep]).max() <= np.abs(weights[keep]).min()
  assert len({float((~m).mean()) for m in _kernels(glob)}) > 1  # layers differ
  # Non-kernel leaves are never pruned.
  assert all(np.shape(m) == () and m for path, m in jax.tree_util.tree_flatten_with_path(glob)[0]
             if not quantize.is_kernel(path))


def test_previously_pruned_weights_stay_pruned_as_sparsity_grows(params):
  first = pruning.magnitude_masks(params, 0.3)
  # Revive the pruned weights with large values: the earlier mask still wins.
  revived = jax.tree.map(lambda w, m: np.where(m, w, 10.0), params, jax.device_get(first))
  second = pruning.magnitude_masks(revived, 0.5, previous=first)
  for a, b in zip(_kernels(first), _kernels(second)):
    assert not np.any(~a & b)


def test_pruned_weights_stay_exactly_zero_through_sgd_with_momentum_and_weight_decay(params):
  settings = plan.Settings('prune', sparsity=0.7, initial_sparsity=0.2, begin_step=0,
                           end_step=6, frequency=2, scope='global')
  trainable, state = plan.prepare(params, settings)
  tx = optax.chain(optax.add_decayed_weights(5e-4),
                   optax.sgd(0.1, momentum=0.9, nesterov=True))
  opt_state = tx.init(trainable)
  # A toy loss that pulls every weight towards 1: without masks nothing stays zero.
  targets = jax.tree.map(np.ones_like, params)

  step = toy_step(tx, targets)

  pushed = 0
  previous = _kernels(state.masks)
  for i in range(1, 9):
    trainable, opt_state, state, updates = step(trainable, opt_state, state, i)
    masks = _kernels(state.masks)
    for w, m, u in zip(_kernels(trainable), masks, _kernels(updates)):
      assert np.all(w[~m] == 0.0)
      pushed += int(np.sum(u[~m] != 0))  # momentum did push pruned weights
    assert all(not np.any(~a & b) for a, b in zip(previous, masks))
    previous = masks
  assert pushed > 0
  kernels = _kernels(trainable)
  total = sum(w.size for w in kernels)
  assert sum(int(np.sum(w == 0)) for w in kernels) == round(0.7 * total)
  assert float(state.sparsity) == pytest.approx(0.7)
  assert np.mean(kernels[0][previous[0]]) > 0.5  # live weights did train
