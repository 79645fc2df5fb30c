"""The deployable inference function of a trained model, independent of the trainer.

A deployed classifier takes raw uint8 pixels and returns logits: normalisation is part
of the function, and BatchNorm is folded into the preceding convolutions, so what is
left is convs (with bias), ReLUs, pools and the classifier, computed in float32. The
ONNX and StableHLO exports and `--mode=predict` all trace this one function.
"""

import copy
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from squeezenet_jax import models
from squeezenet_jax.data import augment
from squeezenet_jax.errors import UserError

Tree = dict[str, Any]


def _subtree(tree: Tree, path: tuple[Any, ...]) -> Tree:
  for key in path:
    tree = tree[key]
  return tree


def _fold(conv: Tree, bn: Tree, stats: Tree, epsilon: float) -> Tree:
  """conv -> BN(eval) as one conv: W*s and (b - mean)*s + beta, s = gamma/sqrt(var+eps).

  Computed in float64 so the folded float32 weights are as close as float32 allows.
  """
  scale = (np.asarray(bn['scale'], np.float64)
           / np.sqrt(np.asarray(stats['var'], np.float64) + epsilon))
  bias = np.asarray(conv.get('bias', 0.0), np.float64)
  return {
      'kernel': (np.asarray(conv['kernel'], np.float64) * scale).astype(np.float32),
      'bias': ((bias - np.asarray(stats['mean'], np.float64)) * scale
               + np.asarray(bn['bias'], np.float64)).astype(np.float32),
  }


def folded_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The architecture the folded weights fit: no BatchNorm (convs get a bias), float32."""
  folded = ml_collections.ConfigDict(config.to_dict())
  folded.model.batch_norm = False
  folded.dtype = 'float32'
  return folded


def fold_batch_norm(config: ml_collections.ConfigDict,
                    model: Tree) -> tuple[ml_collections.ConfigDict, Tree]:
  """BatchNorm folded into the convs before it: (config without BN, its params).

  `model` is `{'params': ..., 'batch_stats': ...}` as nnx pure dicts of arrays (what
  `formats.to_numpy` and `formats.read` give). Each `ConvUnit` with a BN becomes one conv with a
  bias; epsilon is read from the BatchNorm module the config builds. A model without
  BatchNorm comes back unchanged (as float32 numpy arrays).
  """
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), model['params'])
  folded = copy.deepcopy(params)
  for path, module in nnx.iter_modules(models.abstract_model(config)):
    if isinstance(module, models.ConvUnit) and module.bn is not None:
      unit = _subtree(folded, path)
      stats = _subtree(model['batch_stats'], path)['bn']
      unit['conv'] = _fold(unit['conv'], unit.pop('bn'), stats, module.bn.epsilon)
  target = folded_config(config)
  _check_fits(folded, _params_template(target))
  return target, folded


def _params_template(config: ml_collections.ConfigDict) -> Tree:
  _, params = nnx.split(models.abstract_model(config), nnx.Param)
  return nnx.to_pure_dict(params)


def _check_fits(values: Tree, template: Tree) -> None:
  """Raises unless `values` has `template`'s structure and shapes (e.g. a checkpoint of another model)."""
  if jax.tree.structure(values) != jax.tree.structure(template):
    raise UserError('the checkpoint does not fit the run\'s model config (parameter names '
                    'differ): was it trained with another config?')
  for (path, value), ref in zip(jax.tree_util.tree_leaves_with_path(values),
                                jax.tree.leaves(template)):
    if value.shape != ref.shape:
      raise UserError(f'parameter {jax.tree_util.keystr(path)} has shape {value.shape} '
                      f'where the model has {ref.shape}: the checkpoint is of another model')


def logits_fn(config: ml_collections.ConfigDict, model: Tree) -> Callable[[jax.Array], jax.Array]:
  """`images -> logits`: uint8 [B, S, S, 3] (S = data.image_size) to float32 [B, classes].

  Pure and jittable; the folded weights and the normalisation constants are closed
  over, so tracing it (jax.jit, jax.export, jax2onnx) bakes them in as constants.
  """
  target, params = fold_batch_norm(config, model)
  graphdef, state = nnx.split(models.abstract_model(target))
  state = jax.tree.map(lambda x: x, state)
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
  mean, std = augment.statistics(config.data)

  def logits(images: jax.Array) -> jax.Array:
    x = augment.normalize(images, jnp.float32, mean, std)
    return nnx.merge(graphdef, state)(x, train=False).astype(jnp.float32)

  return logits


def batched_logits(logits: Callable[[jax.Array], jax.Array], images: np.ndarray, *,
                   batch_size: int = 256) -> np.ndarray:
  """`logits` of any number of uint8 images on the default device, as numpy.

  Jitted once: every batch has the same size (the last is padded), at most
  `batch_size`, so a folder of any size compiles a single program.
  """
  size = max(1, min(batch_size, len(images)))
  fn = jax.jit(logits)
  outputs = []
  for start in range(0, len(images), size):
    batch = np.asarray(images[start:start + size], np.uint8)
    pad = size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), np.uint8)])
    outputs.append(np.asarray(fn(batch))[:size - pad])
  if not outputs:
    empty = jax.eval_shape(logits, jax.ShapeDtypeStruct((0, *images.shape[1:]), jnp.uint8))
    return np.zeros(empty.shape, empty.dtype)
  return np.concatenate(outputs)


def image_spec(config: ml_collections.ConfigDict, batch: Any = 'B') -> tuple[Any, ...]:
  """The input shape of `logits_fn`: (batch, S, S, 3); `batch` may be symbolic."""
  size = config.data.image_size
  return (batch, size, size, 3)
