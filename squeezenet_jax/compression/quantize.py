"""Post-training weight compression: int8 quantisation and Deep Compression.

Both work on a model tree of nested dicts of numpy arrays (nnx pure dicts) and touch
only the conv/dense kernels, which hold all but a few thousand of the parameters;
biases and BatchNorm vectors stay float32, where rounding them would cost accuracy
for no measurable saving.

- int8 (and int4): symmetric per-output-channel codes, q = round(w / s) with
  s = max|w| / (2**(bits-1) - 0.5) over each last-axis channel, clipped to the
  signed range: qwix's formula (so the top bucket is used fully), and the one
  encoder of every int8/int4 file, post-training or after quantization-aware training.
- Deep Compression (Han et al. 2016): magnitude pruning, then per-layer k-means
  weight sharing (linear initialisation over [min, max], Lloyd iterations) with a
  2**bits codebook whose code 0 is an exact zero for the pruned weights. The file
  that holds them is `compression.container`'s.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


LLOYD_ITERATIONS = 20

Tree = dict[str, Any]


def is_kernel(path: tuple[Any, ...]) -> bool:
  """Conv and dense weights are the leaves named `kernel` (as in flax)."""
  return bool(path) and getattr(path[-1], 'key', None) == 'kernel'


def map_kernels(fn: Callable[[np.ndarray], Any], tree: Tree) -> Tree:
  """Applies `fn` to every kernel and leaves the other leaves as they are."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: fn(x) if is_kernel(path) else x, tree)


# ----------------------------------------------------------------------------
# int8.


def quantize_kernel(w: jax.Array, bits: int = 8) -> dict[str, jax.Array]:
  """{'q': int8 codes in [-2**(bits-1), 2**(bits-1) - 1], 'scale': float32 per last-axis
  channel}; w ~ q * scale. Jittable; channels that are all zero get scale 1."""
  w = jnp.asarray(w, jnp.float32)
  absmax = jnp.max(jnp.abs(w).reshape(-1, w.shape[-1]), axis=0)
  scale = absmax / (2.0**(bits - 1) - 0.5)
  scale = jnp.where(scale < np.sqrt(np.finfo(np.float32).tiny), 1.0, scale)
  q = jnp.clip(jnp.round(w / scale), -2**(bits - 1), 2**(bits - 1) - 1)
  return {'q': q.astype(jnp.int8), 'scale': scale}


def quantize_int8(w: np.ndarray) -> dict[str, np.ndarray]:
  """`quantize_kernel` at 8 bits, as numpy."""
  return jax.device_get(quantize_kernel(w, 8))


def dequantize_int8(encoded: dict[str, np.ndarray]) -> np.ndarray:
  return np.asarray(encoded['q'], np.float32) * np.asarray(encoded['scale'], np.float32)


def _is_int8(x: Any) -> bool:
  return isinstance(x, dict) and set(x) == {'q', 'scale'}


def encode_int8(tree: Tree) -> Tree:
  return map_kernels(quantize_int8, tree)


def to_bfloat16(tree: Tree) -> Tree:
  return jax.tree.map(lambda x: np.asarray(x, jnp.bfloat16), tree)


# ----------------------------------------------------------------------------
# Deep Compression: pruning and weight sharing.


@dataclasses.dataclass(frozen=True)
class SharedWeights:
  """A kernel as codebook indices: weights = codebook[indices].reshape(shape)."""

  codebook: np.ndarray  # float32 (2**bits,), codebook[0] == 0 (the pruned weights)
  indices: np.ndarray  # uint8, flat
  shape: tuple[int, ...]

  def dequantize(self) -> np.ndarray:
    return self.codebook[self.indices].reshape(self.shape)


def prune_mask(w: np.ndarray, fraction: float) -> np.ndarray:
  """Keep-mask that drops the floor(fraction * size) smallest-magnitude weights."""
  flat = np.abs(np.asarray(w)).ravel()
  num_pruned = int(fraction * flat.size)
  keep = np.ones(flat.size, bool)
  if num_pruned:
    keep[np.argpartition(flat, num_pruned - 1)[:num_pruned]] = False
  return keep.reshape(np.shape(w))


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
  """Index of the nearest centroid of each x: 1-D, so a search between midpoints."""
  order = np.argsort(centroids, kind='stable')
  ranked = centroids[order]
  return order[np.searchsorted((ranked[1:] + ranked[:-1]) / 2, x)]


def kmeans_1d(x: np.ndarray, k: int, iterations: int = LLOYD_ITERATIONS) -> tuple[
    np.ndarray, np.ndarray]:
  """(centroids, assignment): Lloyd's k-means from a linear init over [min, max].

  Han et al. found the linear init best: it keeps centroids at the rare large
  weights, which matter most. An empty cluster keeps its centroid.
  """
  centroids = np.linspace(x.min(), x.max(), k) if x.size else np.zeros(k)
  for _ in range(iterations):
    assignment = _nearest(x, centroids)
    sums = np.bincount(assignment, weights=x, minlength=k)
    counts = np.bincount(assignment, minlength=k)
    centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
  return centroids.astype(np.float32), _nearest(x, centroids)


def share_weights(w: np.ndarray, bits: int, prune_fraction: float = 0.0,
                  keep: np.ndarray | None = None) -> SharedWeights:
  """Prunes then clusters one kernel into 2**bits codes, code 0 the exact zero.

  `keep` (w's shape), when given, is the pruning mask instead of `prune_fraction`:
  e.g. the mask that pruning with retraining left.
  """
  if not 1 <= bits <= 8:  # the codes are uint8
    raise ValueError(f'share_weights: bits={bits} is outside 1..8')
  w = np.asarray(w, np.float32)
  keep = (prune_mask(w, prune_fraction) if keep is None else np.asarray(keep, bool)).ravel()
  kept = w.ravel()[keep]
  centroids, assignment = kmeans_1d(kept, 2**bits - 1)
  indices = np.zeros(w.size, np.uint8)
  indices[keep] = assignment + 1
  codebook = np.concatenate([[0.0], centroids]).astype(np.float32)
  return SharedWeights(codebook=codebook, indices=indices, shape=w.shape)


def encode_compressed(tree: Tree, bits: int, prune_fraction: float) -> Tree:
  return map_kernels(lambda w: share_weights(w, bits, prune_fraction), tree)


def _is_encoded(x: Any) -> bool:
  return _is_int8(x) or isinstance(x, SharedWeights)


def _to_float32(x: Any) -> np.ndarray:
  if isinstance(x, SharedWeights):
    return x.dequantize()
  if _is_int8(x):
    return dequantize_int8(x)
  return np.asarray(x, np.float32)


def dequantize(tree: Tree) -> Tree:
  """Any encoded tree (float32, bfloat16, int8, shared) as float32 numpy arrays."""
  return jax.tree.map(_to_float32, tree, is_leaf=_is_encoded)
