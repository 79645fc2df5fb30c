"""Dotted config fields (`model.bypass`) and sweep grids: the helpers configs may import.

Light on purpose: a config file that imports this loads no trainer, optimizer or
plotting library.
"""

import difflib
import itertools
import re
from typing import Any, Mapping, Sequence

import ml_collections

from squeezenet_jax.errors import UserError


def field_names(config: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  names = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      names += field_names(value, f'{prefix}{key}.')
    else:
      names.append(f'{prefix}{key}')
  return names


def set_field(config: ml_collections.ConfigDict, field: str, value: Any,
              where: str = 'an override') -> None:
  """Sets a dotted leaf field that must already exist, with a value of its type."""
  *parents, leaf = field.split('.')
  node = config
  for parent in parents:
    node = node.get(parent) if isinstance(node, ml_collections.ConfigDict) else None
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    close = difflib.get_close_matches(field, field_names(config), n=1)
    hint = f' (did you mean {close[0]}?)' if close else ''
    raise UserError(f'{where} sets unknown field {field}{hint}')
  if isinstance(node[leaf], ml_collections.ConfigDict):
    raise UserError(f'{where} sets {field}, a group of fields: set one of them, '
                    f'e.g. {field}.{next(iter(node[leaf]))}')
  try:
    node[leaf] = value
  except TypeError:
    raise UserError(f'{where} sets {field} to {value!r}, but it takes a '
                    f'{type(node[leaf]).__name__}') from None


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
  for key in field.split('.'):
    config = config[key]
  return config


def product(axes: Mapping[str, Sequence[Any]] | None = None, /,
            **more: Sequence[Any]) -> list[dict[str, Any]]:
  """A sweep: every combination of the axes' values (the first axis varies slowest).

  Dotted fields go in a mapping or through `**`: `product({'model.bypass': (...)})`.
  """
  axes = {**(axes or {}), **more}
  return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def unknown_field_message(error: Exception, argv: Sequence[str]) -> str:
  """ml-collections' `'bypas' ... Did you mean "bypass"` as one line naming the argument."""
  names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(error).replace('\\n', ' '))
  field = names[0] if names else '?'
  arg = next((a.split('=', 1)[0] for a in argv if a.startswith(('--config.', '--noconfig.'))
              and field in a.split('=', 1)[0].split('.')), f'--config...{field}')
  close = re.search(r'Did you mean "([^"]+)"', str(error))
  hint = f' (did you mean {close.group(1)}?)' if close else ''
  return f'{arg}: the config has no field {field}{hint}; --print_config lists them'
