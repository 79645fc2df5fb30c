"""Optimizer and learning-rate schedule from the config, all from optax."""

from typing import NamedTuple

import jax
import ml_collections
import optax


OPTIMIZERS = ('sgd', 'adamw')


SCHEDULES = ('cosine', 'linear')


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Linear warmup, then cosine or linear (triangular) decay to zero over the run."""
  total_steps = max(1, int(config.num_epochs * steps_per_epoch))
  warmup_steps = max(0, min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1))
  if config.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate,
        warmup_steps=warmup_steps, decay_steps=total_steps, end_value=0.0)
  return optax.join_schedules(  # linear
      [optax.linear_schedule(0.0, config.learning_rate, warmup_steps),
       optax.linear_schedule(config.learning_rate, 0.0, total_steps - warmup_steps)],
      [warmup_steps])


def _decay_mask(params):
  """Weight decay on kernels only: biases and BatchNorm scales/offsets are not decayed."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _batch_norm_offsets(params):
  """True at BatchNorm's offsets (`.../bn/bias`), the leaves `bn_bias_lr_scale` scales."""
  def is_offset(path, _):
    names = [getattr(key, 'key', getattr(key, 'name', None)) for key in path]
    return any(a == 'bn' and b == 'bias' for a, b in zip(names, names[1:]))
  return jax.tree_util.tree_map_with_path(is_offset, params)


class Optimizer(NamedTuple):
  tx: optax.GradientTransformation
  schedule: optax.Schedule  # the learning rate tx applies at each step, for logging


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> Optimizer:
  schedule = make_schedule(config, steps_per_epoch)
  if config.optimizer == 'sgd':
    tx = optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=_decay_mask),
        optax.sgd(schedule, momentum=config.momentum, nesterov=True))
  else:  # adamw
    tx = optax.adamw(schedule, weight_decay=config.weight_decay, mask=_decay_mask)
  if config.bn_bias_lr_scale != 1.0:
    # airbench's BatchNorm-bias learning rate: their update (never decayed) scaled, so
    # their learning rate is this multiple of the schedule's under either optimizer.
    tx = optax.chain(tx, optax.masked(optax.scale(config.bn_bias_lr_scale),
                                      _batch_norm_offsets))
  return Optimizer(tx, schedule)
