"""Every config field's allowed values, checked once, before a run writes or loads anything.

A wrong value fails here with one line naming the field, the value and what is
allowed, instead of minutes later (or never: a negative learning rate trains,
upwards). Choice lists belong to the modules that act on them (models, optim, steps,
sources, compression) and are read from there; those modules trust what passed here.
"""

import math
import numbers
from typing import Any, Callable

import ml_collections

from squeezenet_jax import config_utils
from squeezenet_jax import models
from squeezenet_jax.compression import container
from squeezenet_jax.compression import plan
from squeezenet_jax.compression import pruning
from squeezenet_jax.data import archives
from squeezenet_jax.data import sources
from squeezenet_jax.errors import UserError
from squeezenet_jax.training import optim
from squeezenet_jax.training import steps


def _number(x: Any) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _integer(x: Any) -> bool:
  return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def at_least(low: float, integer: bool = False) -> tuple[Callable[[Any], bool], str]:
  check = _integer if integer else _number
  return (lambda x: check(x) and x >= low), f'{"an integer" if integer else "a number"} >= {low}'


def above(low: float) -> tuple[Callable[[Any], bool], str]:
  return (lambda x: _number(x) and x > low), f'a number > {low}'


def fraction(high_open: bool = True) -> tuple[Callable[[Any], bool], str]:
  if high_open:
    return (lambda x: _number(x) and 0 <= x < 1), 'a number in [0, 1)'
  return (lambda x: _number(x) and 0 <= x <= 1), 'a number in [0, 1]'


def one_of(*values: Any) -> tuple[Callable[[Any], bool], str]:
  return (lambda x: x in values), 'one of ' + ', '.join(map(str, values))


def channels(count: int = 3) -> tuple[Callable[[Any], bool], str]:
  return ((lambda x: isinstance(x, (list, tuple)) and len(x) == count
           and all(_number(v) for v in x)), f'{count} numbers (one per channel)')


def positive_channels(count: int = 3) -> tuple[Callable[[Any], bool], str]:
  return ((lambda x: channels(count)[0](x) and all(v > 0 for v in x)),
          f'{count} positive numbers (one per channel)')


# field -> (check, what is allowed).
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    'model.name': one_of(*models.MODELS),
    'model.version': one_of(*models.VERSIONS),
    'model.stem': one_of(*models.STEMS),
    'model.bypass': one_of(*models.BYPASSES),
    'model.batch_norm': one_of(True, False),
    'model.num_classes': at_least(2, integer=True),
    'model.dropout': fraction(),
    'model.classifier_relu': one_of(True, False),
    'model.stem_pool': one_of(True, False),
    'model.base_e': at_least(2, integer=True),
    'model.incr_e': at_least(0, integer=True),
    'model.freq': at_least(1, integer=True),
    'model.pct3x3': (lambda x: _number(x) and 0 < x < 1, 'a number in (0, 1)'),
    'model.squeeze_ratio': above(0),
    'data.source': one_of(*sources.SOURCES),
    'data.image_size': at_least(8, integer=True),
    'data.val_size': at_least(0, integer=True),
    'data.limit': at_least(0, integer=True),
    'data.split_seed': at_least(0, integer=True),
    'data.eval_split': one_of('', *archives.SPLITS),
    'data.synthetic_train_size': at_least(1, integer=True),
    'data.synthetic_eval_size': at_least(1, integer=True),
    'data.synthetic_num_classes': at_least(2, integer=True),
    'data.mean': channels(),
    'data.std': positive_channels(),
    'augment.crop_padding': at_least(0, integer=True),
    'augment.flip': one_of(True, False),
    'augment.alternating_flip': one_of(True, False),
    'optimizer': one_of(*optim.OPTIMIZERS),
    'learning_rate': above(0),
    'momentum': fraction(),
    'weight_decay': at_least(0),
    'label_smoothing': fraction(),
    'bn_bias_lr_scale': above(0),
    'ema_decay': fraction(),
    'warmup_epochs': at_least(0),
    'lr_schedule': one_of(*optim.SCHEDULES),
    'num_epochs': at_least(1, integer=True),
    'batch_size': at_least(1, integer=True),
    'eval_batch_size': at_least(1, integer=True),
    'dtype': one_of(*models.DTYPES),
    'seed': at_least(0, integer=True),
    'epoch_loop': one_of(*steps.EPOCH_LOOPS),
    'eval_every_epochs': at_least(1, integer=True),
    'eval_tta': one_of(True, False),
    'eval_tta_translate': (lambda x: _integer(x) and 0 <= x <= 4, 'an integer from 0 to 4'),
    'checkpoint_every_epochs': at_least(1, integer=True),
    'max_to_keep': at_least(1, integer=True),
    'profile_epoch': at_least(0, integer=True),
    'export.prune_fraction': fraction(),
    'export.bits': (lambda x: _integer(x) and 1 <= x <= 8, 'an integer from 1 to 8'),
    'compress.stages': ((lambda x: isinstance(x, str) and bool(x.strip())),
                        'a comma-separated list of stages (compress.<stage> blocks)'),
    'compress.coding': one_of(*container.CODINGS),
    'compress.vector_dtype': one_of(*container.RAW_DTYPES),
    'compress.reference_workdir': ((lambda x: isinstance(x, str)), 'a path or empty'),
}

# The fields of every `compress.<stage>` block (see configs/default.py).
STAGE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    'method': one_of(*plan.METHODS),
    'start': ((lambda x: isinstance(x, str)), "'' (the run's checkpoint) or a stage name"),
    'bits': (lambda x: _integer(x) and 1 <= x <= 8, 'an integer from 1 to 8'),
    'sparsity': fraction(),
    'scope': one_of(*pruning.SCOPES),
    'initial_sparsity': fraction(),
    'ramp': fraction(high_open=False),
    'frequency': at_least(1, integer=True),
    'epochs': at_least(0, integer=True),
    'optimizer': one_of(*optim.OPTIMIZERS),
    'learning_rate': above(0),
    'warmup_epochs': at_least(0),
}
# Bits each method can write: qwix's int8/int4 codes, or a 1-8 bit codebook.
_STAGE_BITS = {'prune': (8, 4), 'qat': (8, 4), 'share': tuple(range(1, 9))}


def _check(field: str, value: Any, rule: tuple[Callable[[Any], bool], str]) -> None:
  check, allowed = rule
  if not check(value):
    raise UserError(f'config field {field}={value!r} is not allowed: it must be {allowed}')


def compress_stages(config: ml_collections.ConfigDict) -> list[str]:
  """The stage names of `compress.stages`, each checked: its block, fields and start."""
  compress = config.compress
  blocks = [k for k, v in compress.items() if isinstance(v, ml_collections.ConfigDict)]
  names = [n.strip() for n in compress.stages.split(',') if n.strip()]
  for i, name in enumerate(names):
    if name not in blocks:
      raise UserError(f'config field compress.stages={compress.stages!r} names {name!r}, '
                      f'which is not a stage; the stages are {", ".join(blocks)}')
    if name in names[:i]:
      raise UserError(f'config field compress.stages={compress.stages!r} names {name!r} '
                      'twice')
    stage = compress[name]
    for field, rule in STAGE_RULES.items():
      _check(f'compress.{name}.{field}', stage.get(field), rule)
    if stage.bits not in _STAGE_BITS[stage.method]:
      raise UserError(f'config field compress.{name}.bits={stage.bits} is not allowed '
                      f'with method {stage.method}: it must be one of '
                      f'{", ".join(map(str, _STAGE_BITS[stage.method]))}')
    if stage.initial_sparsity > stage.sparsity:
      raise UserError(f'config field compress.{name}.initial_sparsity='
                      f'{stage.initial_sparsity} exceeds compress.{name}.sparsity='
                      f'{stage.sparsity}')
    if stage.start and stage.start not in names[:i]:
      raise UserError(f'config field compress.{name}.start={stage.start!r} is not allowed: '
                      f"it must be '' (the run's checkpoint) or a stage listed before "
                      f'{name!r} in compress.stages ({compress.stages!r})')
  return names


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises a UserError naming the first field outside its allowed values."""
  present = set(config_utils.field_names(config))
  for field, rule in RULES.items():
    if field in present:
      _check(field, config_utils.get_field(config, field), rule)
  if 'compress.stages' in present:
    compress_stages(config)
  if 'augment.alternating_flip' in present and (config.augment.alternating_flip
                                                and not config.augment.flip):
    raise UserError('config field augment.alternating_flip=True needs augment.flip=True '
                    '(it chooses which images are mirrored)')


# What a trained run's config.json must hold: every field this version checks.
RUN_FIELDS = tuple(RULES)


def check_run_config(config: ml_collections.ConfigDict, path: str) -> None:
  """Refuses a run's config.json cut short or hand-edited into missing fields."""
  try:
    present = set(config_utils.field_names(config))
  except AttributeError:  # a group replaced by a value
    present = set()
  missing = [f for f in RUN_FIELDS if f not in present]
  if missing:
    raise UserError(f'{path} lacks {", ".join(missing[:4])}{" ..." if len(missing) > 4 else ""}'
                    ': an earlier version of this code wrote it, or it was edited; this '
                    'version reads the workdirs it writes (train again), or restore the '
                    'file from a copy')
