"""`--mode=sweep`: train a grid of config variants, then compare them in a table and charts.

A sweep config file defines, beside `get_config()`, `get_sweep()`: a list of override
dicts (dotted field -> value), usually built with `product`:

    def get_sweep():
      return sweep.product({'model.bypass': ('none', 'simple', 'complex')})

A dict may also hold a 'name' for its point; otherwise the name is derived from the
overrides (`model.bypass=simple`). Command-line `--config.*` overrides apply to every
point but may not set a swept field. Every point is checked (fields, model, optimizer,
batch sizes, its directory) before any trains, so a typo fails in seconds, not hours.

Points run one after another in this process, each in workdir/<name>/ on all local
devices (data parallel; there is no mode running points side by side, one per
accelerator), with the normal training code: rerunning the sweep skips finished points
(results.json for all epochs) and resumes an interrupted one from its checkpoint; with
`--allow_config_change` it continues points of another config, e.g. for more epochs.
sweep.json, sweep.csv, sweep.md and the charts are rewritten after every point trained,
so a crash keeps what was finished. A point that fails (e.g. diverges) does not stop
the others; the sweep then ends with an error naming it.
"""

import copy
import csv
import dataclasses
import importlib.util
import io
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib
import ml_collections
from absl import logging

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from squeezenet_jax import accounting
from squeezenet_jax import config_utils
from squeezenet_jax import optim
from squeezenet_jax import sharding
from squeezenet_jax import train
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError

JSON_FILE = 'sweep.json'
CSV_FILE = 'sweep.csv'
MARKDOWN_FILE = 'sweep.md'
CHART_FILE = 'sweep.png'
NAME_KEY = 'name'  # in an override dict: the point's name, not a config field
# Copied from each point's results.json into its sweep.json row.
RESULT_FIELDS = ('params', 'analytic_params', 'macs', 'checkpoint_bytes', 'val_accuracy',
                 'train_seconds', 'images_per_second', 'epochs')


@dataclasses.dataclass(frozen=True)
class Point:
  index: int  # 1-based, as messages count
  name: str
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict
  values: dict[str, Any]  # every swept field's value in `config`, set or not


# ----------------------------------------------------------------------------
# Declaring a sweep.


def product(axes: Mapping[str, Sequence[Any]] | None = None, /,
            **more: Sequence[Any]) -> list[dict[str, Any]]:
  """Every combination of the axes' values (the first axis varies slowest).

  Dotted fields go in a mapping or through `**`: `product({'model.bypass': (...)})`.
  """
  axes = {**(axes or {}), **more}
  return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


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


# ----------------------------------------------------------------------------
# Building and checking the points.


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


def check_point(point: Point, point_dir: Path, allow_config_change: bool = False) -> None:
  """Fails now, before anything trains, on what would fail when the point's turn comes."""
  try:
    accounting.summarize(point.config)  # builds the model: variants, widths, image size
    optim.make_optimizer(point.config, steps_per_epoch=1)
    mesh = sharding.make_mesh()
    for name in ('batch_size', 'eval_batch_size'):
      sharding.check_batch_size(name, point.config[name], mesh)
    config_path = point_dir / workdir_lib.CONFIG_FILE
    if config_path.exists() and not allow_config_change:
      diff = workdir_lib.config_diff(workdir_lib.read_json(config_path),
                                     json.loads(point.config.to_json()))
      if diff:
        raise UserError(f'{point_dir} holds a run of another config (differs in '
                        f'{", ".join(diff[:5])}); use a new --workdir, or pass '
                        '--allow_config_change to continue it anyway')
  except UserError as e:
    raise UserError(f'sweep point {point.index} ({point.name}): {e}') from None


def is_finished(point: Point, point_dir: Path) -> bool:
  path = point_dir / workdir_lib.RESULTS_FILE
  return path.exists() and workdir_lib.read_json(path).get('epochs') == point.config.num_epochs


# ----------------------------------------------------------------------------
# Running.


def run(config: ml_collections.ConfigDict, workdir: str, sweep: Sequence[Mapping[str, Any]],
        *, fixed: Iterable[str] = (), allow_config_change: bool = False) -> dict[str, Any]:
  """Trains every unfinished point of `sweep` on `config`; returns sweep.json's dict.

  `fixed`: the fields set on the command line (they hold for every point).
  `allow_config_change`: continue points whose workdir holds another config, e.g. to
  train a finished sweep for more epochs.
  """
  points = make_points(config, sweep, fixed)
  dirs = {p.name: Path(workdir) / p.name for p in points}
  for point in points:
    check_point(point, dirs[point.name], allow_config_change)
  rows, failed = {}, {}
  for point in points:
    point_dir = dirs[point.name]
    skip = is_finished(point, point_dir)
    if skip:
      logging.info('Sweep point %d/%d %s: finished, skipped', point.index, len(points),
                   point.name)
    else:
      logging.info('Sweep point %d/%d %s: training in %s', point.index, len(points),
                   point.name, point_dir)
      try:
        train.train_and_evaluate(point.config, str(point_dir),
                                 allow_config_change=allow_config_change)
      except UserError as e:  # e.g. diverged: the other points may still be good
        logging.error('Sweep point %s failed: %s', point.name, e)
        failed[point.name] = str(e)
    if point.name not in failed:
      rows[point.name] = _row(point, point_dir)
    if not skip and point is not points[-1]:  # the final report is written below
      write(workdir, build_report(points, rows, failed))
  report = build_report(points, rows, failed)
  write(workdir, report)
  print(markdown(report))
  if failed:
    raise UserError(f'{len(failed)} of {len(points)} sweep points failed: ' + '; '.join(
        f'{name}: {message}' for name, message in failed.items()))
  return report


def _row(point: Point, point_dir: Path) -> dict[str, Any]:
  results = workdir_lib.read_json(point_dir / workdir_lib.RESULTS_FILE)
  return {'name': point.name, 'overrides': point.overrides, 'values': point.values,
          **{k: results.get(k) for k in RESULT_FIELDS}}


def is_grid(points: Sequence[Point], fields: Sequence[str]) -> bool:
  """Whether the points are the full product of their fields' values (each once)."""
  combos = {tuple(str(p.values[f]) for f in fields) for p in points}
  sizes = [len({str(p.values[f]) for p in points}) for f in fields]
  return len(fields) > 1 and len(combos) == len(points) == math.prod(sizes)


def build_report(points: Sequence[Point], rows: Mapping[str, dict],
                 failed: Mapping[str, str]) -> dict[str, Any]:
  """sweep.json's dict: finished points' rows in sweep order, the others by name."""
  fields = swept_fields([p.overrides for p in points])
  return {
      'fields': fields,
      'grid': is_grid(points, fields),
      'points': [rows[p.name] for p in points if p.name in rows],
      'pending': [p.name for p in points if p.name not in rows],
      'failed': dict(failed),
  }


# ----------------------------------------------------------------------------
# Table and charts.


def _human(n: float, unit: str = '') -> str:
  """1234567 -> '1.23 M' (decimal prefixes)."""
  for threshold, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(n) >= threshold:
      return f'{n / threshold:.3g} {prefix}{unit}'
  return f'{n:g} {unit}'.rstrip()


def csv_text(report: dict[str, Any]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(['name', *report['fields'], *RESULT_FIELDS])
  for row in report['points']:
    writer.writerow([row['name'], *(row['values'][f] for f in report['fields']),
                     *(row[k] for k in RESULT_FIELDS)])
  return out.getvalue()


def _cells(row: dict[str, Any], fields: Sequence[str]) -> list[str]:
  return [row['name'], *(str(row['values'][f]) for f in fields),
          f"{row['params']:,} ({_human(row['params'])})",
          f"{row['macs']:,} ({_human(row['macs'])})",
          _human(row['checkpoint_bytes'], 'B'),
          f"{row['val_accuracy']:.4f}",
          f"{row['train_seconds']:.1f} s",
          f"{row['images_per_second']:,.0f}"]


def markdown(report: dict[str, Any]) -> str:
  """sweep.md: one table row per finished point, sizes also in k/M/G."""
  fields = report['fields']
  done, total = len(report['points']), len(report['points']) + len(report['pending'])
  header = ['Point', *fields, 'Params', 'MACs/image', 'Checkpoint', 'Val accuracy',
            'Train time', 'Images/s']
  lines = [f'# Sweep: {done} of {total} points finished', '',
           '| ' + ' | '.join(header) + ' |',
           '|' + '---|' * (1 + len(fields)) + '---:|' * 6]
  lines += ['| ' + ' | '.join(_cells(row, fields)) + ' |' for row in report['points']]
  if report['pending']:
    lines += ['', 'Not finished: ' + ', '.join(report['pending']) + '.']
  if report['failed']:
    lines += ['', *(f'- {name} failed: {message}'
                    for name, message in report['failed'].items())]
  if report['points']:
    lines += ['', f'![validation accuracy against parameters]({CHART_FILE})']
  return '\n'.join(lines) + '\n'


def _label(row: dict[str, Any], fields: Sequence[str | None]) -> str:
  """The point's own name if it was given one, else its values of `fields`."""
  if NAME_KEY in row['overrides'] or not any(fields):
    return row['name']
  return ', '.join(str(row['values'][f]) for f in fields)


def chart(report: dict[str, Any], field: str | None, path: str | Path, *,
          label_all: bool = False) -> None:
  """Accuracy against parameters (log x): one line per value of the other swept fields.

  Points are labelled with their value of `field` (`label_all`: of every swept field).
  """
  others = [f for f in report['fields'] if f != field]
  series: dict[str, list[dict]] = {}
  for row in report['points']:
    key = ', '.join(f"{f}={row['values'][f]}" for f in others)
    series.setdefault(key, []).append(row)
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for key, rows in series.items():
    # A line suggests an order between the values: only numbers have one.
    numeric = field and all(isinstance(r['values'][field], (int, float)) and
                            not isinstance(r['values'][field], bool) for r in rows)
    ax.plot([r['params'] for r in rows], [r['val_accuracy'] for r in rows], marker='o',
            linestyle='-' if numeric else 'none', label=key or None)
    for r in rows:
      ax.annotate(_label(r, report['fields'] if label_all else [field]),
                  (r['params'], r['val_accuracy']), textcoords='offset points',
                  xytext=(3, 5), fontsize=8)
  if any(series):
    ax.legend(fontsize=8)
  ax.set_xscale('log')
  ax.margins(x=0.15, y=0.2)
  ax.set_xlabel('parameters')
  ax.set_ylabel('validation accuracy')
  ax.set_title(f'Validation accuracy against size, varying {field or "nothing"}')
  ax.grid(True, which='both', alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def chart_files(report: dict[str, Any]) -> dict[str, str | None]:
  """Chart file -> the field along its lines: sweep.png, and per field for a grid.

  sweep.png labels points with all their values; a grid of several fields also gets
  sweep_<field>.png for each field, with the others' combinations as its lines.
  """
  files = {CHART_FILE: report['fields'][0] if report['fields'] else None}
  if report['grid']:
    files.update({f'sweep_{sanitize(f)}.png': f for f in report['fields']})
  return files


def write(workdir: str | Path, report: dict[str, Any]) -> None:
  workdir = Path(workdir)
  workdir_lib.write_json(workdir / JSON_FILE, report)
  (workdir / CSV_FILE).write_text(csv_text(report))
  (workdir / MARKDOWN_FILE).write_text(markdown(report))
  for name, field in chart_files(report).items():
    chart(report, field, workdir / name, label_all=name == CHART_FILE)
