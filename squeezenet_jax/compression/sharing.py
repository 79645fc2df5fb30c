"""Trained weight sharing (Deep Compression, Han et al. 2016, section 3.2).

Each kernel becomes a codebook of 2**bits values, code 0 the exact zero of the
pruned weights, and a fixed assignment of every weight to a code (per-layer k-means
with linear initialisation, `quantize.share_weights`). Fine-tuning then moves the
centroids, not the weights: a kernel's trainable leaf is its 2**bits - 1 live
centroids, and the kernel the forward pass sees is `concat([0], centroids)[codes]`.
The gradient of that gather is a scatter-add, so each centroid gets the sum of its
weights' gradients (the paper's eq. 3), and code 0 has no trainable value: pruned
weights stay exactly zero.

`codes` is a tree of the params' structure: uint8 codes of the kernel's shape for
each kernel, a scalar 0 placeholder elsewhere (so it checkpoints and maps as one tree).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from squeezenet_jax.compression import quantize

Tree = dict[str, Any]


def _share(w: np.ndarray, bits: int, prune_fraction: float) -> quantize.SharedWeights:
  """k-means over the live weights: zeros (an earlier pruning) stay pruned."""
  w = np.asarray(w, np.float32)
  keep = quantize.prune_mask(w, prune_fraction) & (w != 0)
  return quantize.share_weights(w, bits, keep=keep)


def prepare(params: Tree, bits: int, prune_fraction: float = 0.0) -> tuple[Tree, Tree]:
  """(trainable, codes): centroids in place of kernels, and the fixed assignments.

  Weights that are already zero stay pruned; `prune_fraction` prunes the smallest
  further (post-training pruning, as `--mode=export` does).
  """
  params = jax.device_get(params)
  shared = quantize.map_kernels(lambda w: _share(w, bits, prune_fraction), params)
  is_shared = lambda x: isinstance(x, quantize.SharedWeights)
  trainable = jax.tree.map(lambda x: x.codebook[1:] if is_shared(x) else x, shared,
                           is_leaf=is_shared)
  codes = jax.tree.map(lambda x: x.indices.reshape(x.shape) if is_shared(x)
                       else np.zeros((), np.uint8), shared, is_leaf=is_shared)
  return trainable, codes


def _lookup(centroids: jax.Array, codes: jax.Array) -> jax.Array:
  return jnp.concatenate([jnp.zeros((1,), centroids.dtype), centroids])[codes]


def kernels(trainable: Tree, codes: Tree) -> Tree:
  """The params the model sees: each kernel rebuilt from its centroids (jittable)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x, c: _lookup(x, c) if quantize.is_kernel(path) else x, trainable, codes)


def to_shared(trainable: Tree, codes: Tree) -> Tree:
  """The trained model as numpy `quantize.SharedWeights` kernels, ready to encode."""
  trainable, codes = jax.device_get((trainable, codes))

  def shared(path, x, c):
    if not quantize.is_kernel(path):
      return np.asarray(x)
    codebook = np.concatenate([[0.0], np.asarray(x, np.float32)]).astype(np.float32)
    return quantize.SharedWeights(codebook=codebook, indices=np.asarray(c, np.uint8).ravel(),
                                  shape=tuple(c.shape))

  return jax.tree_util.tree_map_with_path(shared, trainable, codes)
