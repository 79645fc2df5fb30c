"""Training: state, the compiled step and epoch, evaluation, and the resumable loop.

Speed comes from three choices: the whole dataset lives on the device (replicated),
each epoch is one compiled program (`lax.scan` over steps, with shuffling and
augmentation inside it), and metrics stay on the device until the epoch ends. Every
random draw derives from (seed, step) or (seed, epoch), so a resumed run repeats an
uninterrupted one exactly.
"""

import dataclasses
import functools
import math
import signal
import threading
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from squeezenet_jax import accounting
from squeezenet_jax import augment
from squeezenet_jax import checkpoints
from squeezenet_jax import input_pipeline
from squeezenet_jax import metrics as metrics_lib
from squeezenet_jax import models
from squeezenet_jax import optim
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError

@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: nnx.State
  batch_stats: nnx.State
  opt_state: optax.OptState
  rng: jax.Array  # base key; each step/epoch folds its own index in

  def to_items(self) -> dict[str, Any]:
    """The checkpoint items (see checkpoints.ITEMS)."""
    return {'model': {'params': self.params, 'batch_stats': self.batch_stats},
            'opt_state': self.opt_state, 'progress': {'step': self.step, 'rng': self.rng}}

  @classmethod
  def from_items(cls, items: dict[str, Any]) -> 'TrainState':
    return cls(step=items['progress']['step'], rng=items['progress']['rng'],
               params=items['model']['params'], batch_stats=items['model']['batch_stats'],
               opt_state=items['opt_state'])


@dataclasses.dataclass(frozen=True)
class DeviceSplit:
  """A split on the device, padded and batched for evaluation: (batches, batch, ...)."""
  images: jax.Array
  labels: jax.Array
  mask: jax.Array
  size: int


def create_train_state(config: ml_collections.ConfigDict,
                       tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
  model = models.create_model(config, rngs=nnx.Rngs(params=config.seed))
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                     opt_state=tx.init(params), rng=jax.random.PRNGKey(config.seed))
  return graphdef, state


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
  """Per-example loss against label-smoothed one-hot targets."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict) -> Callable:
  """One SGD step on a uint8 batch: augment, normalise, forward, backward, update."""
  dtype = models.compute_dtype(config)

  def train_step(state: TrainState, images: jax.Array, labels: jax.Array):
    aug_key, dropout_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
    x = augment.random_crop_flip(aug_key, images, padding=config.augment.crop_padding,
                                 flip=config.augment.flip)
    x = augment.normalize(x, dtype)

    def loss_fn(params, batch_stats):
      # copy=True: fresh Variables at this trace level, so BatchNorm may update them.
      model = nnx.merge(graphdef, params, batch_stats, copy=True)
      logits = model(x, train=True, rngs=dropout_key)
      loss = cross_entropy(logits, labels, config.label_smoothing).mean()
      return loss, (logits, nnx.state(model, nnx.BatchStat))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          batch_stats=batch_stats, opt_state=opt_state)
    correct = jnp.sum(jnp.argmax(logits, -1) == labels)
    return state, {'loss': loss, 'correct': correct}

  return train_step


def epoch_batches(rng: jax.Array, epoch: jax.Array, num_examples: int, steps: int,
                  batch_size: int) -> jax.Array:
  """Indices of each step's batch, (steps, batch_size): a fresh permutation per epoch."""
  perm_key = jax.random.fold_in(jax.random.fold_in(rng, 0x5EED), epoch)
  perm = jax.random.permutation(perm_key, num_examples)
  return perm[:steps * batch_size].reshape(steps, batch_size)


EPOCH_LOOPS = ('auto', 'scan', 'python')


def resolve_epoch_loop(config: ml_collections.ConfigDict) -> str:
  """`scan` compiles the epoch as one program; `python` dispatches one compiled step at a time.

  `auto` scans on GPU/TPU. On CPU it dispatches steps from Python: there, dispatch
  costs nothing next to a step, while XLA:CPU's convolutions inside a loop body ran
  3 against 56 images/s at top level on a loaded 2-core machine (equal when idle;
  jax-ml/jax#12868).
  """
  loop = config.get('epoch_loop', 'auto')
  if loop not in EPOCH_LOOPS:
    raise UserError(f'unknown epoch_loop {loop!r}; choose one of {EPOCH_LOOPS}')
  if loop == 'auto':
    return 'python' if jax.default_backend() == 'cpu' else 'scan'
  return loop


def _epoch_summary(losses: jax.Array, correct: jax.Array, examples: int) -> dict[str, jax.Array]:
  return {'train_loss': jnp.mean(losses), 'train_accuracy': jnp.sum(correct) / examples}


def make_train_epoch(train_step: Callable, mesh: jax.sharding.Mesh, steps: int,
                     batch_size: int) -> Callable:
  """A whole epoch as one program: shuffle, then `lax.scan` the step over its batches."""
  step_on = make_indexed_step(train_step, mesh)

  def train_epoch(state: TrainState, images: jax.Array, labels: jax.Array):
    batches = epoch_batches(state.rng, state.step // steps, images.shape[0], steps, batch_size)
    batches = jax.lax.with_sharding_constraint(batches, sharding.batch_sharded(mesh, 1))
    state, step_metrics = jax.lax.scan(
        lambda state, idx: step_on(state, images, labels, idx), state, batches)
    return state, _epoch_summary(step_metrics['loss'], step_metrics['correct'],
                                 steps * batch_size)

  return train_epoch


def make_indexed_step(train_step: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """The step on the batch `idx` gathered from the device-resident dataset."""

  def step_on(state: TrainState, images: jax.Array, labels: jax.Array, idx: jax.Array):
    x = jax.lax.with_sharding_constraint(images[idx], sharding.batch_sharded(mesh))
    return train_step(state, x, labels[idx])

  return step_on


class SteppedEpoch:
  """The epoch as a Python loop over one compiled step (see `resolve_epoch_loop`).

  Same batches, keys and math as the scanned epoch; the loop only dispatches work
  (indices and metrics stay on the device), so nothing waits for the host per step.
  """

  def __init__(self, step, batches, steps: int, batch_size: int):
    self._step, self._batches = step, batches
    self._steps, self._batch_size = steps, batch_size

  def __call__(self, state: TrainState, images: jax.Array, labels: jax.Array):
    batches = self._batches(state.rng, state.step // self._steps)
    losses, correct = [], []
    for i in range(self._steps):
      state, metrics = self._step(state, images, labels, batches[i])
      losses.append(metrics['loss'])
      correct.append(metrics['correct'])
    return state, _epoch_summary(jnp.stack(losses), jnp.stack(correct),
                                 self._steps * self._batch_size)


def make_eval_logits(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict) -> Callable:
  """Inference logits on a uint8 batch; `tta` averages with the mirrored images."""
  dtype = models.compute_dtype(config)

  def eval_logits(params, batch_stats, images, tta: bool = False):
    model = nnx.merge(graphdef, params, batch_stats)
    logits = model(augment.normalize(images, dtype), train=False)
    if tta:
      logits = (logits + model(augment.normalize(augment.flip_horizontal(images), dtype),
                               train=False)) / 2
    return logits.astype(jnp.float32)

  return eval_logits


def to_device_split(split: input_pipeline.Split, batch_size: int,
                    mesh: jax.sharding.Mesh) -> DeviceSplit:
  """Pads a split to whole batches (masked) and places it batch-sharded on the mesh."""
  n = len(split.labels)
  num_batches = max(1, math.ceil(n / batch_size))
  pad = num_batches * batch_size - n
  images = np.concatenate([split.images, np.zeros((pad,) + split.images.shape[1:], np.uint8)])
  labels = np.concatenate([split.labels, np.zeros((pad,), np.int32)])
  mask = np.arange(num_batches * batch_size) < n
  reshape = lambda a: a.reshape((num_batches, batch_size) + a.shape[1:])
  images, labels, mask = sharding.put((reshape(images), reshape(labels), reshape(mask)),
                                      sharding.batch_sharded(mesh, 1))
  return DeviceSplit(images=images, labels=labels, mask=mask, size=n)


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


def evaluate_split(evaluate: Callable, state: TrainState, split: DeviceSplit,
                   tta: bool = False) -> dict[str, float]:
  result = evaluate(state.params, state.batch_stats, split.images, split.labels, split.mask,
                    tta=tta)
  return {k: float(v) for k, v in sharding.to_host(result).items()}


def _format_seconds(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'


class Experiment:
  """Everything a run needs, built once from its config: data on device, programs, state."""

  def __init__(self, config: ml_collections.ConfigDict, splits: tuple[str, ...],
               mesh: jax.sharding.Mesh | None = None):
    self.config = config
    self.mesh = mesh or sharding.make_mesh()
    sharding.check_batch_size('batch_size', config.batch_size, self.mesh)
    sharding.check_batch_size('eval_batch_size', config.eval_batch_size, self.mesh)
    self.dataset = input_pipeline.load_dataset(config.data, splits=splits)
    if self.dataset.num_classes != config.model.num_classes:
      raise UserError(f'the data has {self.dataset.num_classes} classes but '
                      f'model.num_classes={config.model.num_classes}')
    for name, split in self.dataset.splits.items():
      if len(split.labels) and not 0 <= split.labels.min() <= split.labels.max() < (
          config.model.num_classes):
        raise UserError(f'{name} labels span [{split.labels.min()}, {split.labels.max()}], '
                        f'outside [0, {config.model.num_classes}) (model.num_classes)')
    train = self.dataset.splits.get('train')
    self.steps_per_epoch = 1
    if train is not None:
      self.steps_per_epoch = len(train.labels) // config.batch_size
      if self.steps_per_epoch == 0:
        raise UserError(f'batch_size={config.batch_size} exceeds the {len(train.labels)} '
                        'training images')
    self.tx = optim.make_optimizer(config, self.steps_per_epoch)
    self.graphdef, state = create_train_state(config, self.tx)
    self.state_sharding = jax.tree.map(lambda _: sharding.replicated(self.mesh), state)
    self.state = sharding.put(state, sharding.replicated(self.mesh))
    self.train_step = make_train_step(self.graphdef, self.tx, config)
    self.evaluate = make_evaluate(make_eval_logits(self.graphdef, config), config.label_smoothing)
    self._eval_splits: dict[str, DeviceSplit] = {}

  def device_train_data(self) -> tuple[jax.Array, jax.Array]:
    train = self.dataset.splits['train']
    return sharding.put((train.images, train.labels), sharding.replicated(self.mesh))

  def eval_split(self, name: str) -> DeviceSplit:
    if name not in self._eval_splits:
      self._eval_splits[name] = to_device_split(self.dataset.splits[name],
                                                self.config.eval_batch_size, self.mesh)
    return self._eval_splits[name]

  def score(self, name: str, tta: bool = False) -> dict[str, float]:
    return evaluate_split(self.evaluate, self.state, self.eval_split(name), tta=tta)

  def compile_epoch(self, images: jax.Array, labels: jax.Array):
    """Compiles the epoch ahead of time; returns (epoch function, seconds compiling)."""
    steps, batch_size = self.steps_per_epoch, self.config.batch_size
    replicated = sharding.replicated(self.mesh)
    start = time.perf_counter()
    if resolve_epoch_loop(self.config) == 'scan':
      epoch = jax.jit(make_train_epoch(self.train_step, self.mesh, steps, batch_size),
                      donate_argnums=0, out_shardings=(self.state_sharding, replicated)
                      ).lower(self.state, images, labels).compile()
    else:
      batches = jax.jit(
          lambda rng, epoch: epoch_batches(rng, epoch, images.shape[0], steps, batch_size),
          out_shardings=sharding.batch_sharded(self.mesh, 1))
      first = batches(self.state.rng, 0)[0]
      step = jax.jit(make_indexed_step(self.train_step, self.mesh), donate_argnums=0,
                     out_shardings=(self.state_sharding, replicated)
                     ).lower(self.state, images, labels, first).compile()
      epoch = SteppedEpoch(step, batches, steps, batch_size)
    return epoch, time.perf_counter() - start

  @property
  def step(self) -> int:
    return int(sharding.to_host(self.state.step))

  def restore(self, checkpointer: checkpoints.Checkpointer, step: int | None = None,
              fallback: bool = False) -> None:
    items = checkpointer.restore(checkpoints.abstract_like(self.state.to_items()), step,
                                 fallback=fallback)
    self.state = TrainState.from_items(items)


def _epoch_seconds_so_far(metrics_path) -> float:
  """Training seconds of the epochs already run (last record per epoch, for resumed runs)."""
  per_epoch = {}
  for event in metrics_lib.read_metrics(metrics_path):
    if 'epoch_seconds' in event:
      per_epoch[event['epoch']] = event['epoch_seconds']
  return float(sum(per_epoch.values()))


def model_size_fields(config: ml_collections.ConfigDict, params: nnx.State) -> dict[str, int]:
  summary = accounting.summarize(config)
  counted = sum(x.size for x in jax.tree.leaves(params))
  return {'params': int(counted), 'analytic_params': int(summary['analytic_params']),
          'macs': int(summary['macs']), 'analytic_bytes': int(summary['analytic_params']) * 4}


class Preempted(Exception):
  """Training stopped on a signal after saving a checkpoint; rerunning resumes."""

  def __init__(self, signum: int, step: int):
    super().__init__(f'stopped by {signal.Signals(signum).name} at step {step} with a '
                     'checkpoint saved; rerun the same command to resume')
    self.signum = signum


class _SignalCatcher:
  """Turns SIGTERM/SIGINT into a flag checked between epochs (a second one kills)."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._catch)
    return self

  def _catch(self, signum, frame):
    del frame
    self.signum = signum
    logging.warning('%s received: saving a checkpoint after this epoch',
                    signal.Signals(signum).name)
    signal.signal(signum, self._previous[signum])

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def _log_epoch(config, epoch: int, step: int, metrics: dict[str, float],
               images_per_second: float, eta_seconds: float) -> None:
  val = f'  val_acc {metrics["val_accuracy"]:.4f}' if 'val_accuracy' in metrics else ''
  logging.info('epoch %d/%d  step %d  loss %.4f  train_acc %.4f%s  %.0f img/s  eta %s',
               epoch, config.num_epochs, step, metrics['train_loss'],
               metrics['train_accuracy'], val, images_per_second,
               _format_seconds(eta_seconds))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False,
                       checkpoint_fallback: bool = False) -> dict[str, Any]:
  """Trains (or resumes) the run in `workdir`; returns and writes results.json.

  Raises `Preempted` after saving a checkpoint when SIGTERM/SIGINT arrives.
  """
  if jax.process_index() == 0:
    workdir_lib.claim(workdir, config, allow_config_change)
  metrics_path = f'{workdir}/{workdir_lib.METRICS_FILE}'
  exp = Experiment(config, splits=('train', 'validation'))
  checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir),
                                          max_to_keep=config.max_to_keep)
  if checkpointer.latest_step() is not None:
    exp.restore(checkpointer, fallback=checkpoint_fallback)
    logging.info('Resumed from step %d', exp.step)
  writer = metrics_lib.MetricsWriter(metrics_path, f'{workdir}/tensorboard')
  steps = exp.steps_per_epoch
  images, labels = exp.device_train_data()
  epoch_fn, compile_seconds = exp.compile_epoch(images, labels)
  logging.info('Compiled the train epoch (%d steps of %d) in %.1fs on %d %s device(s)',
               steps, config.batch_size, compile_seconds, exp.mesh.devices.size,
               jax.devices()[0].platform)
  schedule = optim.make_schedule(config, steps)
  val_metrics: dict[str, float] = {}
  run_seconds = []
  with _SignalCatcher() as signals:
    for epoch in range(exp.step // steps, config.num_epochs):
      start = time.perf_counter()
      exp.state, epoch_metrics = epoch_fn(exp.state, images, labels)
      epoch_metrics = {k: float(v) for k, v in sharding.to_host(epoch_metrics).items()}
      seconds = time.perf_counter() - start
      run_seconds.append(seconds)
      if not math.isfinite(epoch_metrics['train_loss']):
        raise UserError(f'training diverged at epoch {epoch + 1}: loss is '
                        f'{epoch_metrics["train_loss"]}; the last good checkpoint is kept '
                        f'(step {checkpointer.latest_step()}); lower learning_rate')
      last = epoch + 1 == config.num_epochs
      if (epoch + 1) % config.eval_every_epochs == 0 or last:
        val_metrics = {f'val_{k}': v for k, v in exp.score('validation', tta=config.eval_tta).items()}
      step = exp.step
      images_per_second = steps * config.batch_size / seconds
      writer.write(step=step, epoch=epoch + 1, learning_rate=float(schedule(step - 1)),
                   epoch_seconds=seconds, images_per_second=images_per_second,
                   **epoch_metrics, **val_metrics)
      _log_epoch(config, epoch + 1, step, {**epoch_metrics, **val_metrics},
                 images_per_second, np.mean(run_seconds) * (config.num_epochs - epoch - 1))
      if (epoch + 1) % config.checkpoint_every_epochs == 0 or last or signals.signum:
        checkpointer.save(step, exp.state.to_items())
      if signals.signum and not last:
        checkpointer.close()
        writer.close()
        raise Preempted(signals.signum, step)
  if not val_metrics:  # nothing left to train: score the restored state
    val_metrics = {f'val_{k}': v for k, v in exp.score('validation', tta=config.eval_tta).items()}
  checkpointer.close()
  writer.close()
  train_seconds = _epoch_seconds_so_far(metrics_path)
  results = {
      **model_size_fields(config, exp.state.params),
      **val_metrics,
      'train_seconds': train_seconds,
      'compile_seconds': compile_seconds,
      'images_per_second': exp.step * config.batch_size / train_seconds if train_seconds else 0.0,
      'checkpoint_bytes': checkpointer.step_bytes(),
      'checkpoint_step': checkpointer.latest_step(),
      'checkpoint_sizes': {str(s): checkpoints.step_accounting(checkpointer.step_dir(s))
                           for s in checkpointer.all_steps()},
      'steps': exp.step,
      'epochs': exp.step // steps,
      'devices': f'{exp.mesh.devices.size}x {jax.devices()[0].device_kind}',
  }
  if jax.process_index() == 0:
    workdir_lib.write_json(f'{workdir}/{workdir_lib.RESULTS_FILE}', results)
  return results
