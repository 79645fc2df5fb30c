"""The training loop: epochs, evaluation cadence, checkpoints, preemption, results.

Speed comes from `trainer` and `steps` (the dataset on the device, whole epochs as one
compiled program, metrics left on the device until the epoch ends); this module only
decides when to evaluate, save, log and stop. Every random draw derives from (seed,
step) or (seed, epoch) (see `rng`), so a resumed run repeats an uninterrupted one.

A run starts atomically: the config is validated and the data opened before anything
is written, and the workdir is locked against a second writer for the whole run.
"""

import contextlib
import math
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from squeezenet_jax import accounting
from squeezenet_jax import checkpoints
from squeezenet_jax import metrics as metrics_lib
from squeezenet_jax import multiprocess
from squeezenet_jax import sharding
from squeezenet_jax import validation
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.training import progress
from squeezenet_jax.training import trainer as trainer_lib
from squeezenet_jax.training.preemption import Preempted
from squeezenet_jax.training.preemption import SignalCatcher


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False,
                       checkpoint_fallback: bool = False) -> dict[str, Any]:
  """Trains (or resumes) the run in `workdir`; returns results.json's dict.

  Raises `Preempted` after saving a checkpoint when SIGTERM/SIGINT arrives (at any
  process: all processes stop at the same step). A signal during the last epoch or
  after it waits for the run to finish: its last checkpoint committed, results written.
  """
  validation.validate(config)
  with contextlib.ExitStack() as stack:
    # The lock first: a second trainer of the workdir is refused before any work.
    multiprocess.on_process_0(
        lambda: stack.enter_context(workdir_lib.locked(workdir, 'train', unclaimed='remove')))
    # A workdir of another run is refused before any work; claimed once the data opened.
    multiprocess.on_process_0(
        lambda: workdir_lib.check_claim(workdir, config, allow_config_change))
    trainer = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
    multiprocess.on_process_0(lambda: workdir_lib.claim(workdir, config, allow_config_change))
    multiprocess.on_process_0(
        lambda: workdir_lib.write_classes(workdir, trainer.dataset.class_names))
    checkpointer = stack.enter_context(contextlib.closing(checkpoints.Checkpointer(
        workdir_lib.checkpoint_dir(workdir), max_to_keep=config.max_to_keep)))
    signals = SignalCatcher()  # armed by the epochs, disarmed once results are written
    stack.callback(signals.disarm)
    finished = _finished_results(workdir, checkpointer.latest_step(),
                                 config.num_epochs * trainer.steps_per_epoch)
    if finished is not None:
      return finished
    val_metrics = resume_and_train(trainer, checkpointer, workdir,
                                   fallback=checkpoint_fallback, signals=signals)
    results = _results(trainer, checkpointer, workdir, val_metrics)
    if jax.process_index() == 0:
      results = workdir_lib.merge_json(f'{workdir}/{workdir_lib.RESULTS_FILE}', results)
    logging.info('Trained %d epochs (%d steps): val_accuracy %.4f, %s parameters, '
                 'checkpoint %s bytes; results in %s/%s', results['epochs'], results['steps'],
                 results.get('val_accuracy', float('nan')), f'{results["params"]:,}',
                 f'{results["checkpoint_bytes"]:,}', workdir, workdir_lib.RESULTS_FILE)
    return results


def resume_and_train(trainer: trainer_lib.Trainer, checkpointer: checkpoints.Checkpointer,
                     directory: str, *, fallback: bool = False,
                     signals: SignalCatcher | None = None) -> dict[str, float]:
  """Resumes `trainer` from the latest checkpoint, if any, and runs the remaining epochs.

  Training and each stage of `--mode=compress` go through here: metrics to
  `directory`/metrics.jsonl (rows past the checkpoint dropped) and TensorBoard,
  checkpoints on the config's cadence, `Preempted` on SIGTERM/SIGINT after a save.
  Signals are caught from the first epoch until the last checkpoint is committed, or
  for as long as the caller keeps `signals` armed. Returns the last validation scores
  ({} when no epoch was left to run).
  """
  if checkpointer.latest_step() is not None:
    trainer.restore(checkpointer, fallback=fallback)
    logging.info('Resumed from step %d', trainer.step)
  with contextlib.ExitStack() as stack:
    if signals is None:
      signals = SignalCatcher()
      stack.callback(signals.disarm)
    with contextlib.closing(metrics_lib.MetricsWriter(
        f'{directory}/{workdir_lib.METRICS_FILE}', f'{directory}/tensorboard')) as writer:
      writer.truncate_after(trainer.step)
      val_metrics = _train_epochs(trainer, checkpointer, writer, directory, signals)
    checkpointer.wait()
  return val_metrics


def _train_epochs(trainer: trainer_lib.Trainer, checkpointer: checkpoints.Checkpointer,
                  writer: metrics_lib.MetricsWriter, workdir: str,
                  signals: SignalCatcher) -> dict[str, float]:
  """Runs the remaining epochs; returns the last validation scores."""
  config, steps = trainer.config, trainer.steps_per_epoch
  if trainer.step >= config.num_epochs * steps:
    return {}  # nothing left: no compile
  images, labels = trainer.device_train_data()
  epoch_fn, _ = trainer.compile_epoch(images, labels)
  logging.info('Compiled the train epoch (%d steps of %d) in %.1fs on %d %s device(s)',
               steps, config.batch_size, trainer.compile_seconds, trainer.mesh.devices.size,
               jax.devices()[0].platform)
  val_metrics, seconds = {}, []
  signals.arm()
  for epoch in range(trainer.step // steps + 1, config.num_epochs + 1):
    start = time.perf_counter()
    with _maybe_profile(config, epoch, workdir):
      trainer.state, epoch_metrics = epoch_fn(
          trainer.state, images, labels,
          on_step=progress.EpochProgress(epoch, config.num_epochs, steps,
                                         config.batch_size))
      epoch_metrics = {k: float(v) for k, v in sharding.to_host(epoch_metrics).items()}
    seconds.append(time.perf_counter() - start)
    _check_finite(epoch, epoch_metrics, checkpointer)
    last = epoch == config.num_epochs
    evaluated = _validate(trainer) if epoch % config.eval_every_epochs == 0 or last else {}
    val_metrics = evaluated or val_metrics
    images_per_second = steps * config.batch_size / seconds[-1]
    writer.write(step=trainer.step, epoch=epoch,
                 learning_rate=float(trainer.optimizer.schedule(trainer.step - 1)),
                 epoch_seconds=seconds[-1], images_per_second=images_per_second,
                 **epoch_metrics, **evaluated)
    progress.log_epoch(config, epoch, trainer.step, {**epoch_metrics, **evaluated},
                       images_per_second, np.mean(seconds) * (config.num_epochs - epoch))
    stop = multiprocess.agreed_signal(signals.signum)
    if epoch % config.checkpoint_every_epochs == 0 or last or stop:
      checkpointer.save(trainer.step, trainer.state.to_items())
    if stop and not last:
      raise Preempted(stop, trainer.step)
  return val_metrics


def _finished_results(workdir: str, step: int | None,
                      total_steps: int) -> dict[str, Any] | None:
  """A finished run's results.json, if this rerun has nothing to do (no compile, no write)."""
  path = f'{workdir}/{workdir_lib.RESULTS_FILE}'
  if step is None or step < total_steps:
    return None
  try:
    results = workdir_lib.read_json(path)
  except (OSError, UserError):
    return None  # no results yet: the last checkpoint was saved, results were not
  if results.get('steps') != step:
    return None
  logging.info('The run in %s is finished at step %d (%s epochs); results: %s', workdir,
               step, results.get('epochs'), path)
  return results


def _validate(trainer: trainer_lib.Trainer) -> dict[str, float]:
  """val_* scores; with `eval_tta`, also val_*_tta on mirrored-and-averaged logits; with
  an EMA (the run's model), also val_live_* of the weights it averages."""
  scores = {f'val_{k}': v for k, v in trainer.score('validation').items()}
  if trainer.config.eval_tta:
    scores.update({f'val_{k}_tta': v
                   for k, v in trainer.score('validation', tta=True).items()})
  if trainer.state.ema is not None:
    scores.update({f'val_live_{k}': v
                   for k, v in trainer.score('validation', live=True).items()})
  return scores


def _check_finite(epoch: int, epoch_metrics: dict[str, float],
                  checkpointer: checkpoints.Checkpointer) -> None:
  if not math.isfinite(epoch_metrics['train_loss']):
    raise UserError(f'training diverged at epoch {epoch}: loss is '
                    f'{epoch_metrics["train_loss"]}; the last good checkpoint is kept '
                    f'(step {checkpointer.latest_step()}); lower learning_rate')


@contextlib.contextmanager
def _maybe_profile(config: ml_collections.ConfigDict, epoch: int, workdir: str):
  """A jax.profiler trace of epoch `config.profile_epoch` in workdir/profile (TensorBoard)."""
  if config.profile_epoch != epoch:
    yield
    return
  with jax.profiler.trace(f'{workdir}/profile'):
    yield
  logging.info('Wrote a profile of epoch %d to %s/profile', epoch, workdir)


def _epoch_seconds_so_far(metrics_path) -> float:
  """Training seconds of the epochs already run (last record per epoch, for resumed runs)."""
  per_epoch = {}
  for event in metrics_lib.read_metrics(metrics_path):
    if 'epoch_seconds' in event:
      per_epoch[event['epoch']] = event['epoch_seconds']
  return float(sum(per_epoch.values()))


def _results(trainer: trainer_lib.Trainer, checkpointer: checkpoints.Checkpointer, workdir: str,
             val_metrics: dict[str, float]) -> dict[str, Any]:
  config = trainer.config
  train_seconds = _epoch_seconds_so_far(f'{workdir}/{workdir_lib.METRICS_FILE}')
  return {
      **accounting.size_fields(config, trainer_lib.as_model(trainer.graphdef, trainer.model_vars)),
      **(val_metrics or _validate(trainer)),
      'train_seconds': train_seconds,
      'compile_seconds': trainer.compile_seconds,
      'images_per_second': (trainer.step * config.batch_size / train_seconds
                            if train_seconds else 0.0),
      'checkpoint_bytes': checkpointer.step_bytes(),
      'checkpoint_step': checkpointer.latest_step(),
      'checkpoint_sizes': {str(s): checkpoints.step_accounting(checkpointer.step_dir(s))
                           for s in checkpointer.all_steps()},
      'steps': trainer.step,
      'epochs': trainer.step // trainer.steps_per_epoch,
      'devices': f'{trainer.mesh.devices.size}x {jax.devices()[0].device_kind}',
  }
