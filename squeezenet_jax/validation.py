"""Every config field's allowed values, checked before a run writes or loads anything.

A wrong value fails here with one line naming the field, the value and what is
allowed, instead of minutes later (or never: a negative learning rate trains,
upwards). Fields a config lacks are not checked (runs from before they existed).
"""

import math
import numbers
from typing import Any, Callable

import ml_collections

from squeezenet_jax import config_utils
from squeezenet_jax.errors import UserError


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


# field -> (check, what is allowed). The variant fields (model.name, version, stem,
# bypass, data.source, optimizer, dtype, epoch_loop) are checked by their modules,
# which know their choices; here they are listed for a complete, early check.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    'model.name': one_of('squeezenet', 'alexnet'),
    'model.version': one_of('1.0', '1.1'),
    'model.stem': one_of('imagenet', 'cifar'),
    'model.bypass': one_of('none', 'simple', 'complex'),
    'model.batch_norm': one_of(True, False),
    'model.num_classes': at_least(2, integer=True),
    'model.dropout': fraction(),
    'model.base_e': at_least(2, integer=True),
    'model.incr_e': at_least(0, integer=True),
    'model.freq': at_least(1, integer=True),
    'model.pct3x3': (lambda x: _number(x) and 0 < x < 1, 'a number in (0, 1)'),
    'model.squeeze_ratio': above(0),
    'data.source': one_of('tfds', 'folder', 'synthetic'),
    'data.image_size': at_least(8, integer=True),
    'data.val_size': at_least(0, integer=True),
    'data.limit': at_least(0, integer=True),
    'data.split_seed': at_least(0, integer=True),
    'data.eval_split': one_of('', 'train', 'validation', 'test'),
    'data.synthetic_train_size': at_least(1, integer=True),
    'data.synthetic_eval_size': at_least(1, integer=True),
    'data.mean': channels(),
    'data.std': positive_channels(),
    'augment.crop_padding': at_least(0, integer=True),
    'augment.flip': one_of(True, False),
    'optimizer': one_of('sgd', 'adamw'),
    'learning_rate': above(0),
    'momentum': fraction(),
    'weight_decay': at_least(0),
    'label_smoothing': fraction(),
    'warmup_epochs': at_least(0),
    'num_epochs': at_least(1, integer=True),
    'batch_size': at_least(1, integer=True),
    'eval_batch_size': at_least(1, integer=True),
    'dtype': one_of('float32', 'bfloat16'),
    'seed': at_least(0, integer=True),
    'epoch_loop': one_of('auto', 'scan', 'python'),
    'eval_every_epochs': at_least(1, integer=True),
    'eval_tta': one_of(True, False),
    'checkpoint_every_epochs': at_least(1, integer=True),
    'max_to_keep': at_least(1, integer=True),
    'profile_epoch': at_least(0, integer=True),
    'export.prune_fraction': fraction(),
    'export.bits': (lambda x: _integer(x) and 1 <= x <= 8, 'an integer from 1 to 8'),
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises a UserError naming the first field outside its allowed values."""
  present = set(config_utils.field_names(config))
  for field, (check, allowed) in RULES.items():
    if field not in present:
      continue
    value = config_utils.get_field(config, field)
    if not check(value):
      raise UserError(f'config field {field}={value!r} is not allowed: it must be {allowed}')
