"""The pure functions of training and evaluation: a step, an epoch, a scored split.

Nothing here touches files, clocks or the host: `trainer` compiles these functions once
per run, and `loop` calls the compiled programs. An epoch is either one `lax.scan`
program (shuffle, then every step, metrics kept on the device) or, where XLA:CPU runs
convolutions in loop bodies slowly, a Python loop dispatching one compiled step at a
time over the same batches and keys (`resolve_epoch_loop`).
"""

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from squeezenet_jax import models
from squeezenet_jax import rng
from squeezenet_jax import sharding
from squeezenet_jax.data import augment

EPOCH_LOOPS = ('auto', 'scan', 'python')


@flax.struct.dataclass
class Plain:
  """Plain training's stage: the trained params are the model's, nothing follows an update.

  `--mode=compress` trains something else (masked weights, shared-weight centroids):
  its stage, `compression.plan.Stage`, has these two methods and carries its arrays.
  Both run inside the compiled step.
  """

  def to_params(self, trainable: Any) -> Any:
    return trainable

  def after_update(self, trainable: Any, step: jax.Array) -> tuple[Any, 'Plain']:
    del step
    return trainable, self


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: nnx.State  # what is trained: the model's params, or a compress stage's tree
  batch_stats: nnx.State
  opt_state: optax.OptState
  rng: jax.Array  # the root key of `rng.streams`
  stage: Any = Plain()  # checkpointed in the `model` item, unless Plain
  # With `ema_decay`: {'params', 'batch_stats'}, their moving average, the run's model.
  ema: Any = None

  def to_items(self) -> dict[str, Any]:
    """The checkpoint items (see checkpoints.ITEMS).

    `model` is always what evaluation, export and predict use: with an EMA it holds the
    average, and the weights training resumes from go in `live`.
    """
    model = {'params': self.params, 'batch_stats': self.batch_stats}
    if not isinstance(self.stage, Plain):
      model['stage'] = self.stage
    items = {'model': model, 'opt_state': self.opt_state,
             'progress': {'step': self.step, 'rng': self.rng}}
    if self.ema is not None:
      items['model'], items['live'] = dict(self.ema), model
    return items

  @classmethod
  def from_items(cls, items: dict[str, Any]) -> 'TrainState':
    live = items.get('live')
    model = items['model'] if live is None else live
    return cls(step=items['progress']['step'], rng=items['progress']['rng'],
               params=model['params'], batch_stats=model['batch_stats'],
               opt_state=items['opt_state'], stage=model.get('stage', Plain()),
               ema=None if live is None else items['model'])


def ema_update(ema: dict[str, Any], params: Any, batch_stats: Any, step: jax.Array,
               decay: float) -> dict[str, Any]:
  """The moving average after update `step` (1, 2, ...), of params and BN statistics.

  The decay ramps up as min(decay, (1 + step) / (10 + step)), so that the first
  steps' average is not held near the initialisation for 1 / (1 - decay) steps.
  """
  rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step)).astype(jnp.float32)
  new = {'params': params, 'batch_stats': batch_stats}
  return optax.incremental_update(new, ema, 1.0 - rate)


@dataclasses.dataclass(frozen=True)
class DeviceSplit:
  """A split on the device, padded and batched for evaluation: (batches, batch, ...)."""
  images: jax.Array
  labels: jax.Array
  mask: jax.Array
  size: int


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
  """Per-example loss against label-smoothed one-hot targets."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def _normalizer(config: ml_collections.ConfigDict) -> Callable[[jax.Array], jax.Array]:
  mean, std = augment.statistics(config.data)
  dtype = models.compute_dtype(config)
  return lambda images: augment.normalize(images, dtype, mean, std)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict) -> Callable:
  """One SGD step on a uint8 batch: augment, normalise, forward, backward, update.

  Besides loss and correct predictions it reports the global norms of the gradient,
  the update and the parameters after it, so that `metrics.jsonl` shows how training
  moves, not only where it ends. The model runs with
  `state.stage.to_params(state.params)`: the params themselves in plain training.
  With `state.ema`, the step also moves the average towards the updated weights.
  """
  normalize = _normalizer(config)

  def train_step(state: TrainState, images: jax.Array, labels: jax.Array,
                 mirrored: jax.Array | None = None):
    aug_key, dropout_key = rng.step_keys(state.rng, state.step)
    x = augment.random_crop_flip(aug_key, images, padding=config.augment.crop_padding,
                                 flip=config.augment.flip, mirrored=mirrored)
    x = normalize(x)

    def loss_fn(params, batch_stats):
      # copy=True: fresh Variables at this trace level, so BatchNorm may update them.
      model = nnx.merge(graphdef, state.stage.to_params(params), batch_stats, copy=True)
      logits = model(x, train=True, rngs=dropout_key)
      loss = cross_entropy(logits, labels, config.label_smoothing).mean()
      return loss, (logits, nnx.state(model, nnx.BatchStat))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params, stage = state.stage.after_update(optax.apply_updates(state.params, updates),
                                             state.step + 1)
    ema = state.ema
    if ema is not None:
      ema = ema_update(ema, params, batch_stats, state.step + 1, config.ema_decay)
    state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                          opt_state=opt_state, stage=stage, ema=ema)
    return state, {'loss': loss, 'correct': jnp.sum(jnp.argmax(logits, -1) == labels),
                   'grad_norm': optax.tree.norm(grads),
                   'update_norm': optax.tree.norm(updates),
                   'param_norm': optax.tree.norm(params)}

  return train_step


def epoch_batches(root: jax.Array, epoch: jax.Array, num_examples: int, steps: int,
                  batch_size: int) -> jax.Array:
  """Indices of each step's batch, (steps, batch_size): a fresh permutation per epoch."""
  perm = jax.random.permutation(rng.epoch_key(root, epoch), num_examples)
  return perm[:steps * batch_size].reshape(steps, batch_size)


def resolve_epoch_loop(config: ml_collections.ConfigDict) -> str:
  """`scan` compiles the epoch as one program; `python` dispatches one compiled step at a time.

  `auto` scans on GPU/TPU. On CPU it dispatches steps from Python: there, dispatch
  costs nothing next to a step, while XLA:CPU can run convolutions inside a loop body
  far slower than at top level (jax-ml/jax#12868).
  """
  loop = config.epoch_loop
  if loop == 'auto':
    return 'python' if jax.default_backend() == 'cpu' else 'scan'
  return loop


def epoch_summary(step_metrics: dict[str, jax.Array], examples: int) -> dict[str, jax.Array]:
  """Per-epoch scalars from the stacked per-step metrics (still on the device)."""
  return {'train_loss': jnp.mean(step_metrics['loss']),
          'train_accuracy': jnp.sum(step_metrics['correct']) / examples,
          'grad_norm': jnp.mean(step_metrics['grad_norm']),
          'update_norm': jnp.mean(step_metrics['update_norm']),
          'param_norm': step_metrics['param_norm'][-1]}


def make_indexed_step(train_step: Callable, mesh: jax.sharding.Mesh, steps: int,
                      alternating_flip: bool = False) -> Callable:
  """The step on the batch `idx` gathered from the device-resident dataset; with
  `alternating_flip`, its mirrors follow the images' indices and the epoch."""

  def step_on(state: TrainState, images: jax.Array, labels: jax.Array, idx: jax.Array):
    x = jax.lax.with_sharding_constraint(images[idx], sharding.batch_sharded(mesh))
    mirrored = (augment.alternating_flips(rng.flip_key(state.rng), idx, state.step // steps)
                if alternating_flip else None)
    return train_step(state, x, labels[idx], mirrored)

  return step_on


def make_scanned_epoch(train_step: Callable, mesh: jax.sharding.Mesh, steps: int,
                       batch_size: int, alternating_flip: bool = False) -> Callable:
  """A whole epoch as one program: shuffle, then `lax.scan` the step over its batches."""
  step_on = make_indexed_step(train_step, mesh, steps, alternating_flip)

  def train_epoch(state: TrainState, images: jax.Array, labels: jax.Array):
    batches = epoch_batches(state.rng, state.step // steps, images.shape[0], steps, batch_size)
    batches = jax.lax.with_sharding_constraint(batches, sharding.batch_sharded(mesh, 1))
    state, step_metrics = jax.lax.scan(
        lambda state, idx: step_on(state, images, labels, idx), state, batches)
    return state, epoch_summary(step_metrics, steps * batch_size)

  return train_epoch


OnStep = Callable[[int, TrainState], None]


class ScannedEpoch:
  """The compiled scanned epoch, called like a `SteppedEpoch`: one program, no steps to
  report, so `on_step` is never called."""

  def __init__(self, compiled):
    self._compiled = compiled

  def __call__(self, state: TrainState, images: jax.Array, labels: jax.Array,
               on_step: OnStep | None = None):
    del on_step
    return self._compiled(state, images, labels)


class SteppedEpoch:
  """The epoch as a Python loop over one compiled step (see `resolve_epoch_loop`).

  Same batches, keys and math as the scanned epoch; the loop only dispatches work
  (indices and metrics stay on the device), so nothing waits for the host per step.
  `on_step(i, state)` is called after dispatching step i, e.g. for a progress line.
  """

  def __init__(self, step, batches, steps: int, batch_size: int):
    self._step, self._batches = step, batches
    self._steps, self._batch_size = steps, batch_size

  def __call__(self, state: TrainState, images: jax.Array, labels: jax.Array,
               on_step: OnStep | None = None):
    batches = self._batches(state.rng, state.step // self._steps)
    per_step = []
    for i in range(self._steps):
      state, metrics = self._step(state, images, labels, batches[i])
      per_step.append(metrics)
      if on_step is not None:
        on_step(i + 1, state)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)
    return state, epoch_summary(stacked, self._steps * self._batch_size)


def compile_epoch(train_step: Callable, config: ml_collections.ConfigDict,
                  mesh: jax.sharding.Mesh, state: TrainState, state_sharding: Any,
                  images: jax.Array, labels: jax.Array, steps: int
                  ) -> ScannedEpoch | SteppedEpoch:
  """The epoch `resolve_epoch_loop` picks, compiled ahead of time for these arguments."""
  batch_size, alternating = config.batch_size, config.augment.alternating_flip
  out_shardings = (state_sharding, sharding.replicated(mesh))
  if resolve_epoch_loop(config) == 'scan':
    return ScannedEpoch(jax.jit(make_scanned_epoch(train_step, mesh, steps, batch_size,
                                                   alternating),
                                donate_argnums=0, out_shardings=out_shardings
                                ).lower(state, images, labels).compile())
  batches = jax.jit(
      lambda root, epoch: epoch_batches(root, epoch, images.shape[0], steps, batch_size),
      out_shardings=sharding.batch_sharded(mesh, 1))
  first = batches(state.rng, 0)[0]
  step = jax.jit(make_indexed_step(train_step, mesh, steps, alternating), donate_argnums=0,
                 out_shardings=out_shardings).lower(state, images, labels, first).compile()
  return SteppedEpoch(step, batches, steps, batch_size)


def make_eval_logits(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict) -> Callable:
  """Inference logits on a uint8 batch; `tta` averages over `augment.tta_views`."""
  normalize = _normalizer(config)
  translate = config.eval_tta_translate

  def eval_logits(params, batch_stats, images, tta: bool = False):
    model = nnx.merge(graphdef, params, batch_stats)
    if not tta:
      return model(normalize(images), train=False).astype(jnp.float32)
    logits = sum(weight * model(normalize(view), train=False).astype(jnp.float32)
                 for weight, view in augment.tta_views(images, translate))
    return logits

  return eval_logits


def make_evaluate(eval_logits: Callable, label_smoothing: float) -> Callable:
  """Accuracy and loss over a `DeviceSplit`, one compiled scan over its batches."""

  @functools.partial(jax.jit, static_argnames='tta')
  def evaluate(params, batch_stats, images, labels, mask, tta=False):

    def body(totals, batch):
      x, y, m = batch
      logits = eval_logits(params, batch_stats, x, tta)
      losses = cross_entropy(logits, y, label_smoothing)
      correct = (jnp.argmax(logits, -1) == y) & m
      return (totals[0] + jnp.sum(correct), totals[1] + jnp.sum(losses * m)), None

    (correct, loss), _ = jax.lax.scan(body, (jnp.zeros((), jnp.int32), jnp.zeros(())),
                                      (images, labels, mask))
    count = jnp.sum(mask)
    return {'accuracy': correct / count, 'loss': loss / count}

  return evaluate
