"""The training loop: epochs, evaluation cadence, checkpoints, preemption, results.

Speed comes from `setup` and `steps` (the dataset on the device, whole epochs as one
compiled program, metrics left on the device until the epoch ends); this module only
decides when to evaluate, save, log and stop. Every random draw derives from (seed,
step) or (seed, epoch) (see `rng`), so a resumed run repeats an uninterrupted one.
"""

import contextlib
import math
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from squeezenet_jax import checkpoints
from squeezenet_jax import metrics as metrics_lib
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.training import setup
from squeezenet_jax.training.preemption import Preempted
from squeezenet_jax.training.preemption import SignalCatcher


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False,
                       checkpoint_fallback: bool = False) -> dict[str, Any]:
  """Trains (or resumes) the run in `workdir`; returns and writes results.json.

  Raises `Preempted` after saving a checkpoint when SIGTERM/SIGINT arrives.
  """
  if jax.process_index() == 0:
    workdir_lib.claim(workdir, config, allow_config_change)
  trainer = setup.Trainer(config, setup.load_data(config, ('train', 'validation')))
  checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir),
                                          max_to_keep=config.max_to_keep)
  if checkpointer.latest_step() is not None:
    trainer.restore(checkpointer, fallback=checkpoint_fallback)
    logging.info('Resumed from step %d', trainer.step)
  writer = metrics_lib.MetricsWriter(f'{workdir}/{workdir_lib.METRICS_FILE}',
                                     f'{workdir}/tensorboard')
  images, labels = trainer.device_train_data()
  epoch_fn, compile_seconds = trainer.compile_epoch(images, labels)
  steps = trainer.steps_per_epoch
  logging.info('Compiled the train epoch (%d steps of %d) in %.1fs on %d %s device(s)',
               steps, config.batch_size, compile_seconds, trainer.mesh.devices.size,
               jax.devices()[0].platform)
  val_metrics: dict[str, float] = {}
  seconds_per_epoch = []
  with SignalCatcher() as signals:
    for epoch in range(trainer.step // steps + 1, config.num_epochs + 1):
      start = time.perf_counter()
      with _maybe_profile(config, epoch, workdir):
        trainer.state, epoch_metrics = epoch_fn(trainer.state, images, labels)
        epoch_metrics = {k: float(v) for k, v in sharding.to_host(epoch_metrics).items()}
      seconds_per_epoch.append(time.perf_counter() - start)
      _check_finite(epoch, epoch_metrics, checkpointer)
      last = epoch == config.num_epochs
      if epoch % config.eval_every_epochs == 0 or last:
        val_metrics = _validate(trainer)
      images_per_second = steps * config.batch_size / seconds_per_epoch[-1]
      writer.write(step=trainer.step, epoch=epoch,
                   learning_rate=float(trainer.optimizer.schedule(trainer.step - 1)),
                   epoch_seconds=seconds_per_epoch[-1], images_per_second=images_per_second,
                   **epoch_metrics, **val_metrics)
      _log_epoch(config, epoch, trainer.step, {**epoch_metrics, **val_metrics},
                 images_per_second,
                 np.mean(seconds_per_epoch) * (config.num_epochs - epoch))
      if epoch % config.checkpoint_every_epochs == 0 or last or signals.signum:
        checkpointer.save(trainer.step, trainer.state.to_items())
      if signals.signum and not last:
        checkpointer.close()
        writer.close()
        raise Preempted(signals.signum, trainer.step)
  if not val_metrics:  # nothing left to train: score the restored state
    val_metrics = _validate(trainer)
  checkpointer.close()
  writer.close()
  results = _results(trainer, checkpointer, workdir, compile_seconds, val_metrics)
  if jax.process_index() == 0:
    workdir_lib.write_json(f'{workdir}/{workdir_lib.RESULTS_FILE}', results)
  return results


def _validate(trainer: setup.Trainer) -> dict[str, float]:
  scores = trainer.score('validation', tta=trainer.config.eval_tta)
  return {f'val_{k}': v for k, v in scores.items()}


def _check_finite(epoch: int, epoch_metrics: dict[str, float],
                  checkpointer: checkpoints.Checkpointer) -> None:
  if not math.isfinite(epoch_metrics['train_loss']):
    raise UserError(f'training diverged at epoch {epoch}: loss is '
                    f'{epoch_metrics["train_loss"]}; the last good checkpoint is kept '
                    f'(step {checkpointer.latest_step()}); lower learning_rate')


@contextlib.contextmanager
def _maybe_profile(config: ml_collections.ConfigDict, epoch: int, workdir: str):
  """A jax.profiler trace of epoch `config.profile_epoch` in workdir/profile (TensorBoard)."""
  if config.get('profile_epoch', 0) != epoch:
    yield
    return
  with jax.profiler.trace(f'{workdir}/profile'):
    yield
  logging.info('Wrote a profile of epoch %d to %s/profile', epoch, workdir)


def _format_seconds(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'


def _log_epoch(config, epoch: int, step: int, metrics: dict[str, float],
               images_per_second: float, eta_seconds: float) -> None:
  val = f'  val_acc {metrics["val_accuracy"]:.4f}' if 'val_accuracy' in metrics else ''
  logging.info('epoch %d/%d  step %d  loss %.4f  train_acc %.4f%s  %.0f img/s  eta %s',
               epoch, config.num_epochs, step, metrics['train_loss'],
               metrics['train_accuracy'], val, images_per_second,
               _format_seconds(eta_seconds))


def _epoch_seconds_so_far(metrics_path) -> float:
  """Training seconds of the epochs already run (last record per epoch, for resumed runs)."""
  per_epoch = {}
  for event in metrics_lib.read_metrics(metrics_path):
    if 'epoch_seconds' in event:
      per_epoch[event['epoch']] = event['epoch_seconds']
  return float(sum(per_epoch.values()))


def _results(trainer: setup.Trainer, checkpointer: checkpoints.Checkpointer, workdir: str,
             compile_seconds: float, val_metrics: dict[str, float]) -> dict[str, Any]:
  config = trainer.config
  train_seconds = _epoch_seconds_so_far(f'{workdir}/{workdir_lib.METRICS_FILE}')
  return {
      **setup.size_fields(config, trainer.graphdef, trainer.model_vars),
      **val_metrics,
      'train_seconds': train_seconds,
      'compile_seconds': compile_seconds,
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
