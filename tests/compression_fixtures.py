"""Shared by the compression tests: a tiny SqueezeNet's parameters without compiling its init."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from conftest import tiny_config
from squeezenet_jax import models


def tiny_params(seed: int = 0, **overrides):
  """numpy pure dict shaped like configs/tiny.py's model params, normal(0, 0.1) values.

  The shapes come from a shape-only trace (nnx.eval_shape), so nothing compiles.
  """
  abstract = models.abstract_model(tiny_config(**overrides))
  shapes = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes)


def toy_step(tx: optax.GradientTransformation, targets):
  """A compiled step of a compress plan on a toy loss pulling every weight to `targets`.

  (trainable, opt_state, state, i) -> (trainable, opt_state, state, updates): the
  optax update through `Stage.to_params`, then `Stage.after_update`, as the
  trainer's step does, without a model or data.
  """
  @jax.jit
  def step(trainable, opt_state, state, i):
    def loss(t):
      p = state.to_params(t)
      return sum(jnp.sum((a - b)**2) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(targets)))
    updates, opt_state = tx.update(jax.grad(loss)(trainable), opt_state, trainable)
    trainable, state = state.after_update(optax.apply_updates(trainable, updates), i)
    return trainable, opt_state, state, updates
  return step
