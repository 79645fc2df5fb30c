"""Shared by the compression tests: a tiny SqueezeNet's parameters without compiling its init."""

import jax
import numpy as np
from flax import nnx

from conftest import tiny_config
from squeezenet_jax import models


def tiny_params(seed: int = 0, **overrides):
  """numpy pure dict shaped like configs/tiny.py's model params, normal(0, 0.1) values.

  The shapes come from a shape-only trace (nnx.eval_shape), so nothing compiles.
  """
  abstract = nnx.eval_shape(lambda: models.create_model(tiny_config(**overrides),
                                                        rngs=nnx.Rngs(0)))
  shapes = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes)
