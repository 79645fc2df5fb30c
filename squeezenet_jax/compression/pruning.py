"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").

The target sparsity rises from `initial` to `final` between `begin_step` and
`end_step` along a cubic, s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))**3,
fast at first while there are many redundant weights, slowly near the end. It is
held constant between mask updates every `frequency` steps, so the masks change at
t0, t0 + frequency, ... and at t1; before t0 nothing is pruned.

Masks are trees of the params' structure: a bool array (True = kept) for each kernel
(`quantize.is_kernel`) and a scalar True for every other leaf, so that masking is one
`jnp.where` per leaf. Pruning is per layer (each kernel loses the same fraction) or
global (one magnitude threshold over all kernels, so wide layers lose more). A mask
only grows its pruned set: weights pruned once rank below every live weight.

Inside a compiled step, `apply_masks` is used twice: on the params the forward pass
sees (so a pruned weight gets a zero gradient and optimizer state stays clean), and
on the params after the update (so weight decay and momentum cannot revive one):
pruned weights stay exactly 0.0.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from squeezenet_jax.compression import quantize

SCOPES = ('layer', 'global')

Tree = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The cubic sparsity schedule of Zhu & Gupta; `schedule(step)` is jittable."""

  final_sparsity: float
  begin_step: int = 0
  end_step: int = 0
  initial_sparsity: float = 0.0
  frequency: int = 1

  def __call__(self, step: jax.Array | int) -> jax.Array:
    """The target sparsity at `step`, as the last mask update before it set it."""
    step = jnp.asarray(step, jnp.int32)
    held = self.begin_step + (step - self.begin_step) // self.frequency * self.frequency
    held = jnp.clip(jnp.where(step >= self.end_step, self.end_step, held),
                    self.begin_step, self.end_step)
    span = max(self.end_step - self.begin_step, 1)
    remaining = 1.0 - (held - self.begin_step).astype(jnp.float32) / span
    if self.end_step == self.begin_step:  # one shot: the final sparsity at once
      remaining = jnp.zeros_like(remaining)
    sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * remaining**3
    return jnp.where(step < self.begin_step, 0.0, sparsity).astype(jnp.float32)

  def is_update(self, step: jax.Array | int) -> jax.Array:
    """Whether the masks change at `step`: begin, every `frequency` steps after, end."""
    step = jnp.asarray(step, jnp.int32)
    on_beat = (step - self.begin_step) % self.frequency == 0
    return (step >= self.begin_step) & (step <= self.end_step) & (
        on_beat | (step == self.end_step))


def full_masks(params: Tree) -> Tree:
  """Masks that keep everything: all-True kernels, scalar True elsewhere."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: np.ones(np.shape(x) if quantize.is_kernel(path) else (), bool), params)


def _keep_largest(scores: jax.Array, sparsity: jax.Array) -> jax.Array:
  """Flat keep-mask dropping the round(sparsity * n) lowest scores (stable on ties)."""
  n = scores.size
  num_pruned = jnp.round(sparsity * n).astype(jnp.int32)
  ranks = jnp.zeros(n, jnp.int32).at[jnp.argsort(scores, stable=True)].set(
      jnp.arange(n, dtype=jnp.int32))
  return ranks >= num_pruned


@functools.partial(jax.jit, static_argnames='scope')
def magnitude_masks(params: Tree, sparsity: jax.Array | float, scope: str = 'layer',
                    previous: Tree | None = None) -> Tree:
  """Masks pruning the smallest-|w| `sparsity` of each kernel ('layer') or of all ('global').

  Weights that `previous` pruned rank lowest, so they stay pruned while sparsity grows.
  """
  previous = full_masks(params) if previous is None else previous
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  prev_leaves = treedef.flatten_up_to(previous)
  kernels = [i for i, (path, _) in enumerate(leaves) if quantize.is_kernel(path)]
  # -1 sits below every |w|: previously pruned weights go first.
  scores = {i: jnp.where(prev_leaves[i], jnp.abs(leaves[i][1]), -1.0).ravel() for i in kernels}
  sparsity = jnp.asarray(sparsity, jnp.float32)
  if scope == 'global' and kernels:
    keep = _keep_largest(jnp.concatenate([scores[i] for i in kernels]), sparsity)
    splits = np.cumsum([scores[i].size for i in kernels])[:-1]
    flat_keep = dict(zip(kernels, jnp.split(keep, splits)))
  else:
    flat_keep = {i: _keep_largest(scores[i], sparsity) for i in kernels}
  masks = [flat_keep[i].reshape(jnp.shape(x)) if i in flat_keep else jnp.ones((), bool)
           for i, (_, x) in enumerate(leaves)]
  return jax.tree_util.tree_unflatten(treedef, masks)


@jax.jit
def apply_masks(params: Tree, masks: Tree) -> Tree:
  """Params with every pruned weight set to exactly 0.0."""
  return jax.tree.map(lambda x, m: jnp.where(m, x, jnp.zeros((), x.dtype)), params, masks)
