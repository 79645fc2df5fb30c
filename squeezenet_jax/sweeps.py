"""Sweeps declared beside configs: their points, and the comparison of their results.

A sweep config file defines, beside `get_config()`, `get_sweep()`: a list of override
dicts (dotted field -> value), usually built with `config_utils.product`:

    def get_sweep():
      return product({'model.bypass': ('none', 'simple', 'complex')})

A dict may also hold a 'name' for its point; otherwise the name is derived from the
overrides (`model.bypass=simple`). Command-line `--config.*` overrides apply to every
point but may not set a swept field. Running the points is `modes.sweep`'s job;
rendering the report, `reporting`'s.
"""

import copy
import dataclasses
import importlib.util
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import ml_collections

from squeezenet_jax import config_utils
from squeezenet_jax import reporting
from squeezenet_jax import seed_groups
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError

NAME_KEY = 'name'  # in an override dict: the point's name, not a config field
# Copied from each point's results.json into its sweep.json row.
RESULT_FIELDS = ('params', 'analytic_params', 'macs', 'checkpoint_bytes', 'val_accuracy',
                 'train_seconds', 'images_per_second', 'epochs', 'steps')


@dataclasses.dataclass(frozen=True)
class Point:
  index: int  # 1-based, as messages count
  name: str
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict
  values: dict[str, Any]  # every swept field's value in `config`, set or not


def sanitize(name: str) -> str:
  """A directory (and file) name: letters, digits and `_.=,+-` only."""
  return re.sub(r'[^A-Za-z0-9_.=,+-]+', '_', name).lstrip('.-')


def point_name(overrides: Mapping[str, Any]) -> str:
  """The override dict's 'name', else `field=value,...` from its overrides."""
  if NAME_KEY in overrides:
    return sanitize(str(overrides[NAME_KEY]))
  return sanitize(','.join(f'{k}={v}' for k, v in overrides.items()))


def load_sweep(config_file: str) -> list[dict[str, Any]]:
  """`get_sweep()` of a config file; like `get_config`, `file.py:arg` passes `arg`."""
  path, *args = config_file.split(':', 1)
  spec = importlib.util.spec_from_file_location('sweep_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise UserError(f'{path} defines no get_sweep(): --mode=sweep needs a sweep config '
                    '(see configs/sweeps/)')
  return module.get_sweep(*args)


def swept_fields(sweep: Sequence[Mapping[str, Any]]) -> list[str]:
  """The fields any point overrides, in first-seen order."""
  return list(dict.fromkeys(k for overrides in sweep for k in overrides if k != NAME_KEY))


def make_points(config: ml_collections.ConfigDict, sweep: Sequence[Mapping[str, Any]],
                fixed: Iterable[str] = ()) -> list[Point]:
  """Each point's config: `config` with its overrides; `fixed` fields may not be swept."""
  if not isinstance(sweep, (list, tuple)) or not sweep or not all(
      isinstance(o, Mapping) for o in sweep):
    raise UserError('get_sweep() must return a non-empty list of override dicts')
  fields = swept_fields(sweep)
  clash = sorted(set(fields) & set(fixed))
  if clash:
    raise UserError(f'--config.{clash[0]} is swept by this sweep: drop it from the '
                    'command line (or from get_sweep())')
  built, seen = [], {}
  for index, overrides in enumerate(sweep, 1):
    name = point_name(overrides)
    where = f'sweep point {index} ({name})'
    if not name or name in seen:
      taken = f' (point {seen[name]} has it)' if name else ''
      raise UserError(f"{where} needs a name of its own{taken}: give it a '{NAME_KEY}'")
    seen[name] = index
    point_config = copy.deepcopy(config)
    for field, value in overrides.items():
      if field != NAME_KEY:
        config_utils.set_field(point_config, field, value, where)
    built.append((index, name, dict(overrides), point_config))
  return [Point(index, name, overrides, point_config, {f: config_utils.get_field(point_config, f) for f in fields})
          for index, name, overrides, point_config in built]


def row(point: Point, point_dir: Path) -> dict[str, Any]:
  """A finished point's sweep.json row, from its results.json."""
  results = workdir_lib.read_json(point_dir / workdir_lib.RESULTS_FILE)
  return {'name': point.name, 'overrides': point.overrides, 'values': point.values,
          'batch_size': point.config.batch_size,
          **{k: results.get(k) for k in RESULT_FIELDS}}


def is_grid(points: Sequence[Point], fields: Sequence[str]) -> bool:
  """Whether the points are the full product of their fields' values (each once)."""
  combos = {tuple(str(p.values[f]) for f in fields) for p in points}
  sizes = [len({str(p.values[f]) for p in points}) for f in fields]
  return len(fields) > 1 and len(combos) == len(points) == math.prod(sizes)


def groups(points: Sequence[Point], finished: Sequence[dict],
           fields: Sequence[str]) -> dict[str, Any] | None:
  """sweep.json's `groups`: finished points that differ only in `seed`, as mean and
  spread (`seed_groups`), with the fields and grid-ness of their charts; None unless
  the sweep has points that differ only in seed."""
  others = seed_groups.other_fields(fields)
  firsts: dict[tuple, Point] = {}  # one point per group
  for point in points:
    firsts.setdefault(tuple(repr(point.values[f]) for f in others), point)
  if len(others) == len(fields) or len(firsts) == len(points):
    return None
  return {'fields': others, 'grid': is_grid(list(firsts.values()), others),
          'rows': seed_groups.group_by_seed(finished, fields)}


def build_report(points: Sequence[Point], rows: Mapping[str, dict],
                 failed: Mapping[str, str]) -> dict[str, Any]:
  """sweep.json's dict: finished points' rows in sweep order, the others by name, and
  the seed groups of the finished points (see `groups`)."""
  fields = swept_fields([p.overrides for p in points])
  finished = [rows[p.name] for p in points if p.name in rows]
  return {
      'fields': fields,
      'data': reporting.data_label(points[0].config.to_dict()),
      'grid': is_grid(points, fields),
      'points': finished,
      'pending': [p.name for p in points if p.name not in rows],
      'failed': dict(failed),
      'groups': groups(points, finished, fields),
  }
