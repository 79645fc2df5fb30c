"""What a run builds once from its config before any epoch: data, model, programs.

`Scorer` is what evaluation needs (the model's graph and the compiled evaluation over
device-resident splits); `Trainer` adds the training data on the device, the optimizer,
the train state and the compiled epoch. `--mode=eval` and `--mode=export` build a
Scorer and restore only the checkpoint's `model` item: no optimizer, no `opt_state`.
`--mode=compress` builds a Trainer from a `FineTune` instead of a fresh initialisation.
`RestoredRun` is a trained run's latest checkpoint and a Scorer, what the modes on a
trained run start from.
"""

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from squeezenet_jax import accounting
from squeezenet_jax import checkpoints
from squeezenet_jax import models
from squeezenet_jax import rng
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.data import dataset as dataset_lib
from squeezenet_jax.data import sources
from squeezenet_jax.errors import UserError
from squeezenet_jax.training import optim
from squeezenet_jax.training import steps as steps_lib

ModelVars = dict[str, nnx.State]  # {'params': ..., 'batch_stats': ...}: the `model` item
# XLA:CPU options of the init program (`init_model`).
INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 2}
# A remainder of the training images past the last full batch worth a warning.
LEFT_OUT_WARNING = 0.05


def load_data(config: ml_collections.ConfigDict, splits: tuple[str, ...],
              run_classes: Sequence[str] | None = None) -> dataset_lib.Dataset:
  """The splits, checked against the model: class count and label range; with
  `run_classes` (a trained run's), labels mapped to them by name."""
  dataset = dataset_lib.match_classes(dataset_lib.load_dataset(config.data, splits=splits),
                                      run_classes)
  if dataset.num_classes != config.model.num_classes:
    raise UserError(f'the data has {dataset.num_classes} classes but '
                    f'model.num_classes={config.model.num_classes}')
  for name, split in dataset.splits.items():
    if len(split.labels) and not 0 <= split.labels.min() <= split.labels.max() < (
        config.model.num_classes):
      raise UserError(f'{name} labels span [{split.labels.min()}, {split.labels.max()}], '
                      f'outside [0, {config.model.num_classes}) (model.num_classes)')
  return dataset


def init_model(config: ml_collections.ConfigDict) -> tuple[nnx.GraphDef, ModelVars]:
  """The model's graph and freshly initialised variables (from the `init` stream).

  Initialised in one compiled program: eagerly, every parameter shape is a small
  compilation of its own (tens of them, seconds on a CPU) in every process. On CPU the
  program is compiled at XLA's backend optimization level 2, not 3: it runs once, and
  LLVM's O3 passes over its random-number fusions were most of its compile time (more
  so from jax 0.11 on), for bit-identical values.
  """
  graphdef, _ = abstract_model(config)

  def init(key):
    model = models.create_model(config, rngs=nnx.Rngs(params=key))
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return params, batch_stats

  key = rng.streams(rng.root_key(config.seed)).init
  options = INIT_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else None
  params, batch_stats = jax.jit(init).lower(key).compile(options)(key)
  return graphdef, {'params': params, 'batch_stats': batch_stats}


def abstract_model(config: ml_collections.ConfigDict) -> tuple[nnx.GraphDef, ModelVars]:
  """Graph and shape-only variables: a restore target that allocates nothing."""
  graphdef, params, batch_stats = nnx.split(models.abstract_model(config), nnx.Param,
                                            nnx.BatchStat)
  return graphdef, {'params': params, 'batch_stats': batch_stats}


def as_model(graphdef: nnx.GraphDef, variables: ModelVars) -> nnx.Module:
  """The model of a run's variables (e.g. for accounting)."""
  return nnx.merge(graphdef, variables['params'], variables['batch_stats'])


def restore_model(config: ml_collections.ConfigDict, checkpointer: checkpoints.Checkpointer,
                  mesh: jax.sharding.Mesh, *, step: int | None = None,
                  fallback: bool = False) -> tuple[nnx.GraphDef, ModelVars, int]:
  """(graph, variables, step) of a checkpoint's `model` item alone, replicated on `mesh`."""
  graphdef, abstract = abstract_model(config)
  replicated = sharding.replicated(mesh)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          abstract)
  restored, step = checkpointer.restore({'model': abstract}, step, fallback=fallback)
  return graphdef, restored['model'], step


def to_device_split(split: sources.Split, batch_size: int,
                    mesh: jax.sharding.Mesh) -> steps_lib.DeviceSplit:
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
  return steps_lib.DeviceSplit(images=images, labels=labels, mask=mask, size=n)


class Scorer:
  """Accuracy and loss of model variables on the dataset's splits, compiled once."""

  def __init__(self, config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
               dataset: dataset_lib.Dataset, mesh: jax.sharding.Mesh):
    sharding.check_batch_size('eval_batch_size', config.eval_batch_size, mesh)
    self.config, self.dataset, self.mesh = config, dataset, mesh
    self._evaluate = steps_lib.make_evaluate(steps_lib.make_eval_logits(graphdef, config),
                                             config.label_smoothing)
    self._splits: dict[str, steps_lib.DeviceSplit] = {}

  def split(self, name: str) -> steps_lib.DeviceSplit:
    if name not in self._splits:
      self._splits[name] = to_device_split(self.dataset.splits[name],
                                           self.config.eval_batch_size, self.mesh)
    return self._splits[name]

  def __call__(self, variables: ModelVars, name: str, tta: bool = False) -> dict[str, float]:
    split = self.split(name)
    result = self._evaluate(variables['params'], variables['batch_stats'], split.images,
                            split.labels, split.mask, tta=tta)
    return {k: float(v) for k, v in sharding.to_host(result).items()}


@dataclasses.dataclass(frozen=True)
class FineTune:
  """Where a fine-tuning run starts instead of a fresh initialisation (`--mode=compress`).

  `variables['params']` is what is trained (the stage's trainable tree) and `stage`
  what the step runs it through (`compression.plan.Stage`); `graphdef` is the graph
  that training and evaluation run on `stage.to_params(trainable)` (e.g. qwix's
  quantized model, so validation scores the quantized forward pass).
  """
  graphdef: nnx.GraphDef
  variables: dict[str, Any]
  stage: Any
  rng: jax.Array  # root key of the fine-tuning's random streams


class Trainer:
  """A training run's data on the device, optimizer, state and compiled programs."""

  def __init__(self, config: ml_collections.ConfigDict, dataset: dataset_lib.Dataset,
               mesh: jax.sharding.Mesh | None = None, *, fine_tune: FineTune | None = None):
    self.config = config
    self.mesh = mesh or sharding.make_mesh()
    sharding.check_batch_size('batch_size', config.batch_size, self.mesh)
    self.dataset = dataset
    num_train = len(dataset.splits['train'].labels)
    self.steps_per_epoch = num_train // config.batch_size
    if self.steps_per_epoch == 0:
      raise UserError(f'batch_size={config.batch_size} exceeds the {num_train} '
                      'training images')
    left_out = num_train - self.steps_per_epoch * config.batch_size
    if left_out > LEFT_OUT_WARNING * num_train:
      logging.warning('Each epoch trains on %d of the %d training images (%.0f%% left out, '
                      'a different part every epoch): batch_size=%d does not divide them; '
                      'a batch_size or data.limit that does trains on all of them.',
                      num_train - left_out, num_train, 100 * left_out / num_train,
                      config.batch_size)
    self.optimizer = optim.make_optimizer(config, self.steps_per_epoch)
    if fine_tune is None:
      self.graphdef, variables = init_model(config)
      stage, root = steps_lib.Plain(), rng.root_key(config.seed)
    else:
      self.graphdef, variables = fine_tune.graphdef, fine_tune.variables
      stage, root = fine_tune.stage, fine_tune.rng
    # A fine-tuning (compress) stage trains its own tree through its stage: no EMA. The
    # EMA starts as a copy: the step donates the state, and one buffer cannot be donated
    # twice.
    ema = (jax.tree.map(jnp.copy, variables) if config.ema_decay > 0 and fine_tune is None
           else None)
    state = steps_lib.TrainState(
        step=np.zeros((), np.int32), params=variables['params'],
        batch_stats=variables['batch_stats'], opt_state=self.optimizer.tx.init(
            variables['params']), rng=root, stage=stage, ema=ema)
    replicated = sharding.replicated(self.mesh)
    self.state_sharding = jax.tree.map(lambda _: replicated, state)
    self.state = sharding.put(state, replicated)
    self.scorer = Scorer(config, self.graphdef, dataset, self.mesh)
    self._train_step = steps_lib.make_train_step(self.graphdef, self.optimizer.tx, config)
    self._to_params = jax.jit(lambda params, stage: stage.to_params(params))
    self.compile_seconds = 0.0  # set by compile_epoch

  @property
  def step(self) -> int:
    return int(sharding.to_host(self.state.step))

  @property
  def model_vars(self) -> ModelVars:
    """The run's model: the EMA with `ema_decay`, else `live_vars`."""
    return dict(self.state.ema) if self.state.ema is not None else self.live_vars

  @property
  def live_vars(self) -> ModelVars:
    """The variables training updates (through the stage: the params in plain training)."""
    return {'params': self._to_params(self.state.params, self.state.stage),
            'batch_stats': self.state.batch_stats}

  def score(self, name: str, tta: bool = False, live: bool = False) -> dict[str, float]:
    """Scores on split `name` of the run's model, or with `live` of the trained weights."""
    return self.scorer(self.live_vars if live else self.model_vars, name, tta=tta)

  def device_train_data(self) -> tuple[jax.Array, jax.Array]:
    train = self.dataset.splits['train']
    return sharding.put((train.images, train.labels), sharding.replicated(self.mesh))

  def compile_epoch(self, images: jax.Array, labels: jax.Array):
    """Compiles the epoch ahead of time; returns (epoch function, seconds compiling)."""
    logging.info('Compiling the train epoch (%d steps of %d) ...',
                 self.steps_per_epoch, self.config.batch_size)
    start = time.perf_counter()
    epoch = steps_lib.compile_epoch(self._train_step, self.config, self.mesh, self.state,
                                    self.state_sharding, images, labels,
                                    self.steps_per_epoch)
    self.compile_seconds = time.perf_counter() - start
    return epoch, self.compile_seconds

  def restore(self, checkpointer: checkpoints.Checkpointer, step: int | None = None,
              fallback: bool = False) -> int:
    """Loads a checkpoint's items into the state; returns the step restored."""
    latest = checkpointer.latest_step() if step is None else step
    with_ema = latest is not None and checkpointer.has_item(latest, 'live')
    if latest is not None and with_ema != (self.state.ema is not None):
      found = ('holds a `live` item: it was trained with an EMA of the weights; resume it '
               'with its ema_decay > 0 (config.json)' if with_ema else
               'holds no `live` item, which an EMA run saves: it was trained without an EMA '
               'of the weights (resume it with ema_decay=0, config.json) or the item is lost')
      raise UserError(f'the checkpoint {checkpointer.step_dir(latest)} {found}; or train in '
                      'a new --workdir')
    items, step = checkpointer.restore(checkpoints.abstract_like(self.state.to_items()), step,
                                       fallback=fallback)
    self.state = steps_lib.TrainState.from_items(items)
    return step


class RestoredRun:
  """A trained run's model (its latest checkpoint's `model` item) and a scorer for the
  split its config names (`trained_run.config_for`)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, fallback: bool = False):
    self.workdir, self.config = workdir, config
    self.split = dataset_lib.resolve_eval_split(config.data)
    self.checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir),
                                                 read_only=True)
    mesh = sharding.make_mesh()
    self.graphdef, self.variables, self.step = restore_model(
        config, self.checkpointer, mesh, fallback=fallback)
    data = load_data(config, (self.split,), workdir_lib.read_classes(workdir))
    self.data_description = data.description
    self.scorer = Scorer(config, self.graphdef, data, mesh)

  @property
  def num_images(self) -> int:
    return self.scorer.split(self.split).size

  def score(self, variables: ModelVars | None = None, tta: bool = False) -> dict[str, float]:
    """Accuracy and loss of `variables` (default: the checkpoint's) on the split."""
    return self.scorer(self.variables if variables is None else variables, self.split, tta)

  def size_fields(self) -> dict[str, int]:
    return accounting.size_fields(self.config, as_model(self.graphdef, self.variables))

  def trained(self) -> dict[str, Any]:
    """How far the restored checkpoint trained: steps, images seen, epochs."""
    results_path = Path(self.workdir) / workdir_lib.RESULTS_FILE
    results = workdir_lib.read_json(results_path) if results_path.exists() else {}
    epochs = results.get('epochs') if results.get('steps') == self.step else None
    return {'steps': self.step, 'images_seen': self.step * self.config.batch_size,
            'epochs': epochs}
