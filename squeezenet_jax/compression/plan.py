"""The compression plan: what a train step needs to fine-tune a model into a format.

One stage of `--mode=compress` is one `Settings.method`:

  prune   gradual magnitude pruning to `sparsity` (Zhu & Gupta; `pruning`);
          exported as int8 codes (zeros stay code 0), entropy coded.
  share   trained weight sharing with 2**bits codebooks (Deep Compression 3.2;
          `sharing`); zeros of an earlier stage stay pruned.
  qat     quantization-aware training to `bits` = 8 or 4 (qwix; `qat`), optionally
          with activations; zeros of an earlier stage stay pruned.

Stages chain through their float params: prune, then `share` or `qat` on
`stage.to_params(trainable)` of the pruned model (Deep Compression is
prune -> share -> entropy code).

The contract with the trainer: a stage is a `Stage`, a pytree the train state carries
beside the params it trains (plain training carries `steps.Plain`, with the same
methods). Params are nnx pure dicts (`nnx.to_pure_dict`), which `nnx.merge` accepts:

  trainable, stage = prepare(params, settings)       # host, once per stage
  model = transform_model(model, sample, settings)   # host, before nnx.split: the
      # graphdef the train step merges with (qwix's quantized model for `qat`, the
      # same model otherwise). Eval and export use the plain model.
  # in the step, under jit (step = updates applied in this stage, this one included):
  params = stage.to_params(trainable)                # what the model sees; differentiable
  trainable, stage = stage.after_update(trainable, step)
  # checkpointed with the params; rebuilt by prepare() (deterministic) to resume.
  encoded = stage.encode(trainable)                  # host: params with kernels as codes

`trainable` has the params' tree structure; only `share` changes leaf shapes (a
kernel's leaf is its 2**bits - 1 centroids, 1-D, so the optimizer's ndim > 1 weight
decay mask leaves centroids undecayed). The centroid gradient is a sum over many
weights: give `share` a smaller learning rate than training (or adam).
"""

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import pruning
from squeezenet_jax.compression import qat
from squeezenet_jax.compression import sharing

METHODS = ('prune', 'share', 'qat')

Tree = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Settings:
  """One stage's settings (the integration maps `config.compress.*` onto these)."""

  method: str
  bits: int = 8  # share: codebook bits (1-8); qat: weight bits (8 or 4); prune: export bits
  sparsity: float = 0.0  # prune: final sparsity; share: extra post-training pruning
  scope: str = 'layer'  # prune: 'layer' or 'global'
  initial_sparsity: float = 0.0
  begin_step: int = 0
  end_step: int = 0
  frequency: int = 1  # prune: steps between mask updates
  activation_bits: int | None = None  # qat: also quantize activations (8, with 8-bit weights)

  def schedule(self) -> pruning.Schedule:
    return pruning.Schedule(final_sparsity=self.sparsity, begin_step=self.begin_step,
                            end_step=self.end_step, initial_sparsity=self.initial_sparsity,
                            frequency=self.frequency)


@flax.struct.dataclass
class Stage:
  """A stage's arrays: `masks` (prune, qat; True = kept), `codes` (share), `sparsity`;
  its settings are static."""

  masks: Tree | None
  codes: Tree | None
  sparsity: jax.Array  # the schedule's target at the last mask update
  settings: Settings = flax.struct.field(pytree_node=False)

  def to_params(self, trainable: Tree) -> Tree:
    """The params the forward pass uses (jittable, differentiable in `trainable`)."""
    if self.codes is not None:
      return sharing.kernels(trainable, self.codes)
    # Masking here too gives pruned weights zero gradients (clean optimizer state).
    return pruning.apply_masks(trainable, self.masks)

  def after_update(self, trainable: Tree, step: jax.Array | int) -> tuple[Tree, 'Stage']:
    """After the optimizer's update: new masks when the schedule moves, pruned weights to 0."""
    if self.masks is None:
      return trainable, self
    masks = self.masks
    target = self.sparsity
    if self.settings.method == 'prune':
      schedule = self.settings.schedule()
      update = schedule.is_update(step)
      target = jnp.where(update, schedule(step), self.sparsity)
      masks = jax.lax.cond(
          update, lambda: pruning.magnitude_masks(trainable, target, self.settings.scope, masks),
          lambda: masks)
    return pruning.apply_masks(trainable, masks), self.replace(masks=masks, sparsity=target)

  def encode(self, trainable: Tree) -> Tree:
    """The model with kernels as codes: `quantize.SharedWeights` or `{'q', 'scale'}`."""
    if self.codes is not None:
      return sharing.to_shared(trainable, self.codes)
    return qat.encode(jax.device_get(self.to_params(trainable)), self.settings.bits)


def _zeros_pruned(params: Tree) -> Tree:
  """Masks that keep every nonzero kernel weight: an earlier stage's pruning."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: (np.asarray(x) != 0) if quantize.is_kernel(path) else np.ones((), bool),
      jax.device_get(params))


def prepare(params: Tree, settings: Settings) -> tuple[Tree, Stage]:
  """(trainable, state) for a stage starting from float `params` (an nnx pure dict)."""
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  if not any(quantize.is_kernel(path) for path in paths):
    # An nnx.State's paths end in `.value`: nothing would be compressed.
    raise ValueError('prepare() takes the params as an nnx pure dict (nnx.to_pure_dict), '
                     'with leaves named `kernel`; found none')
  params = jax.tree.map(jnp.asarray, params)
  zero = jnp.zeros((), jnp.float32)
  if settings.method == 'share':
    trainable, codes = sharing.prepare(params, settings.bits, settings.sparsity)
    return jax.tree.map(jnp.asarray, trainable), Stage(
        masks=None, codes=jax.tree.map(jnp.asarray, codes), sparsity=zero, settings=settings)
  masks = _zeros_pruned(params)
  if settings.method == 'prune':
    target = settings.schedule()(0)
    masks = pruning.magnitude_masks(params, target, settings.scope, previous=masks)
    return pruning.apply_masks(params, masks), Stage(masks=masks, codes=None, sparsity=target,
                                                     settings=settings)
  return params, Stage(masks=masks, codes=None, sparsity=zero, settings=settings)


def transform_model(model: nnx.Module, sample: jax.Array, settings: Settings) -> nnx.Module:
  """The model the train step runs: qwix's quantized copy for `qat`, else `model`."""
  if settings.method != 'qat':
    return model
  return qat.quantize_model(model, sample, settings.bits, settings.activation_bits)


def sparsity(encoded: Tree) -> float:
  """Fraction of kernel weights that are exactly zero in an encoded tree."""
  weights = quantize.dequantize(encoded)
  kernels = [x for path, x in jax.tree_util.tree_flatten_with_path(weights)[0]
             if quantize.is_kernel(path)]
  total = sum(k.size for k in kernels)
  return float(sum(np.sum(k == 0) for k in kernels) / total) if total else 0.0
