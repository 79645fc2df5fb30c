"""Dotted config fields (`model.bypass`) and sweep grids: the helpers configs may import.

Light on purpose: a config file that imports this loads no trainer, optimizer or
plotting library.
"""

import difflib
import glob
import importlib.machinery
import importlib.util
import itertools
import os
import re
from typing import Any, Mapping, Sequence

import ml_collections

from squeezenet_jax.errors import UserError
from squeezenet_jax.errors import first_line


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


def config_file_problem(value: str) -> str | None:
  """Why `--config=value` (`path[:argument]`) cannot give a config, or None if it can.

  ml-collections reports a missing file as a failed read of a config deferred to its first
  use, a syntax error as a traceback and a file without `get_config` as an unknown field;
  this loads the file as it does (SourceFileLoader, then `get_config(argument)`) to name
  the problem in one line. The file then runs twice, here and in absl's parse: configs are
  cheap and side-effect free.
  """
  path, _, argument = value.partition(':')
  if not path:
    return '--config needs a config file, e.g. --config=configs/default.py'
  if not os.path.isfile(path):
    shipped = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), 'configs', '[!_]*.py')))
    names = ', '.join(f'configs/{os.path.basename(p)}' for p in shipped)
    what = (f'{path} is a folder, not a config file' if os.path.isdir(path)
            else f'no such file {path}')
    return f'--config={value}: {what}' + (f'; the configs: {names}' if names else '')
  try:
    loader = importlib.machinery.SourceFileLoader('_checked_config', path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    if not callable(getattr(module, 'get_config', None)):
      return (f'--config={value} has no get_config() function: a config file defines '
              'get_config() returning an ml_collections.ConfigDict, as configs/ files do')
    config = module.get_config(*([argument] if argument else []))
  except Exception as e:  # pylint: disable=broad-except  # whatever the user's file raises
    where = f', line {e.lineno}' if isinstance(e, SyntaxError) and e.lineno else ''
    detail = e.msg if isinstance(e, SyntaxError) else first_line(e)
    return (f'--config={value} cannot be loaded ({type(e).__name__}{where}'
            f'{": " + detail if detail else ""}): fix the file')
  if not isinstance(config, ml_collections.ConfigDict):
    return (f'--config={value}: get_config() returned {type(config).__name__}, not an '
            'ml_collections.ConfigDict')
  return None
