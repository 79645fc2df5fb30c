"""Trained weight sharing: centroids train with summed gradients, assignments stay fixed."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from compression_fixtures import tiny_params
from compression_fixtures import toy_step
from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import plan
from squeezenet_jax.compression import sharing


@pytest.fixture(scope='module')
def params():
  return tiny_params()


def _kernel_paths(tree):
  return [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
          if quantize.is_kernel(path)]


def _at(tree, path):
  for key in path:
    tree = tree[key.key]
  return np.asarray(tree)


def test_kernels_are_codebook_lookups_with_pruned_weights_at_code_zero(params):
  # An earlier stage pruned half of every kernel to exact zeros.
  pruned = quantize.map_kernels(lambda w: np.where(quantize.prune_mask(w, 0.5), w, 0.0), params)
  trainable, codes = sharing.prepare(pruned, bits=4)
  weights = sharing.kernels(trainable, codes)
  for path in _kernel_paths(params):
    w, c, k = _at(pruned, path), _at(codes, path), _at(weights, path)
    assert _at(trainable, path).shape == (15,) and c.shape == w.shape and c.dtype == np.uint8
    np.testing.assert_array_equal(c == 0, w == 0)
    np.testing.assert_array_equal(k[w == 0], 0.0)
    # Each live weight sits at its nearest live centroid (k-means' assignment).
    live = w[w != 0]
    nearest = np.abs(live[:, None] - _at(trainable, path)[None]).min(axis=1)
    np.testing.assert_allclose(np.abs(k[w != 0] - live), nearest, atol=1e-7)
  bias_path = next(p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
                   if p[-1].key == 'bias')
  np.testing.assert_array_equal(_at(trainable, bias_path), _at(params, bias_path))


def test_centroid_gradient_is_the_sum_of_its_weights_gradients(params):
  trainable, codes = sharing.prepare(params, bits=3, prune_fraction=0.3)
  upstream = jax.tree.map(lambda w: np.random.default_rng(1).normal(size=w.shape), params)
  # d/dc of sum(W * G) is, per centroid, the sum of G over the weights it holds.
  grads = jax.grad(lambda t: sum(jnp.sum(a * b) for a, b in zip(
      jax.tree.leaves(sharing.kernels(t, codes)), jax.tree.leaves(upstream))))(trainable)
  for path in _kernel_paths(params):
    c, g = _at(codes, path).ravel(), _at(upstream, path).ravel()
    expected = np.bincount(c, weights=g, minlength=8)[1:]  # code 0 (pruned) is not trained
    np.testing.assert_allclose(_at(grads, path), expected, rtol=1e-4, atol=1e-4)


def test_training_moves_centroids_and_keeps_assignments(params):
  settings = plan.Settings('share', bits=4, sparsity=0.4)
  trainable, state = plan.prepare(params, settings)
  start, codes = jax.device_get((trainable, state.codes))
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(1e-3, momentum=0.9))
  opt_state = tx.init(trainable)
  targets = jax.tree.map(np.ones_like, params)

  step = toy_step(tx, targets)

  for i in range(1, 4):
    trainable, opt_state, state, _ = step(trainable, opt_state, state, i)
  end = jax.device_get(trainable)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.codes), codes)
  weights = jax.device_get(state.to_params(trainable))
  for path in _kernel_paths(params):
    used = np.bincount(_at(codes, path).ravel(), minlength=16)[1:] > 0
    assert np.all(_at(end, path)[used] > _at(start, path)[used])  # pulled towards 1
    np.testing.assert_array_equal(_at(weights, path)[_at(codes, path) == 0], 0.0)
  # The export is the trained codebook with the same assignments.
  shared = state.encode(trainable)
  for path in _kernel_paths(params):
    leaf = shared
    for key in path:
      leaf = leaf[key.key]
    np.testing.assert_array_equal(leaf.indices, _at(codes, path).ravel())
    np.testing.assert_array_equal(leaf.codebook[1:], _at(end, path))
    np.testing.assert_array_equal(leaf.dequantize(), _at(weights, path))
  assert plan.sparsity(shared) == pytest.approx(0.4, abs=0.01)
