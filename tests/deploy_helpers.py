"""Shared by the deploy tests: models with non-trivial BatchNorm, and real CIFAR-10 slices."""

import collections
import functools
import json
import tarfile
from pathlib import Path

import jax
import ml_collections
import numpy as np
from flax import nnx

from squeezenet_jax import models
from squeezenet_jax.data import augment

# The shared folder beside the repository holds CIFAR-10's training split as JPEGs.
CIFAR10_JPEG_TRAIN = (Path(__file__).resolve().parents[2] / 'shared' / 'data'
                      / 'cifar10-jpeg-train.tar.xz')


def random_model(config, seed: int = 0) -> dict:
  """See `_random_model`; cached per (config, seed), so callers must not modify it."""
  return _random_model(config.to_json(), seed)


@functools.lru_cache(maxsize=None)
def _random_model(config_json: str, seed: int) -> dict:
  """`{'params', 'batch_stats'}` as formats.to_numpy gives them, like a trained one's.

  Weights are drawn with numpy (eager nnx initialisation takes ~20 s on this CPU):
  He-normal kernels, small random biases, BatchNorm scales and shifts away from 1 and
  0. The BatchNorm running statistics are, as after training, those of the data: of
  one train-mode pass over random images (momentum 0), so activations stay O(1).
  """
  config = ml_collections.ConfigDict(json.loads(config_json))
  model = models.abstract_model(config)
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      fan_in = int(np.prod(x.shape[:-1]))
      return rng.normal(0.0, np.sqrt(2.0 / fan_in), x.shape).astype(np.float32)
    if name.endswith("['scale']") or name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    return rng.normal(0.0, 0.2 if "'bn'" in name else 0.05, x.shape).astype(np.float32)

  values = {part: jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state))
            for part, state in (('params', params), ('batch_stats', batch_stats))}
  if not config.model.batch_norm:
    return values
  nnx.replace_by_pure_dict(params, values['params'])
  nnx.replace_by_pure_dict(batch_stats, values['batch_stats'])
  model = nnx.merge(graphdef, params, batch_stats)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.BatchNorm):
      module.momentum = 0.0  # running statistics := this batch's
  images = augment.normalize(random_images(64, seed=seed))
  nnx.jit(lambda m, x: m(x, train=True, rngs=jax.random.key(seed)))(model, images)
  values['batch_stats'] = jax.tree.map(np.asarray,
                                       nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
  return values


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def cifar_slice(root: Path, per_class: int) -> Path:
  """The first `per_class` images of each class of the shared CIFAR-10 JPEG archive,
  written to `root` laid out train/<class>/<image> (a `data.source=folder` path)."""
  counts = collections.Counter()
  with tarfile.open(CIFAR10_JPEG_TRAIN, 'r|xz') as archive:
    for member in archive:
      parts = member.name.split('/')
      if member.isfile() and len(parts) == 3 and counts[parts[1]] < per_class:
        counts[parts[1]] += 1
        path = root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(archive.extractfile(member).read())
  return root
