"""A sweep's report files: sweep.json, sweep.csv, sweep.md and its charts.

The dict is `sweeps.build_report`'s; tables and charts follow `reporting`'s conventions.
"""

from pathlib import Path
from typing import Any, NamedTuple, Sequence

from squeezenet_jax import reporting
from squeezenet_jax import workdir as workdir_lib


SWEEP_JSON, SWEEP_CSV, SWEEP_MARKDOWN, SWEEP_CHART = (
    'sweep.json', 'sweep.csv', 'sweep.md', 'sweep.png')
_SWEEP_CSV_FIELDS = ('params', 'analytic_params', 'macs', 'checkpoint_bytes', 'val_accuracy',
                     'train_seconds', 'images_per_second', 'epochs', 'steps')


def short_field(field: str) -> str:
  """`model.bypass` -> `bypass`: the last part names a field well enough on a chart."""
  return field.rsplit('.', 1)[-1]


def _seed_group_of(report: dict[str, Any]) -> dict[str, dict]:
  """Point name -> its seed group's row (empty without seed groups)."""
  groups = report.get('groups') or {'rows': []}
  return {name: group for group in groups['rows'] for name in group['points']}


def _mean_std(group: dict[str, Any], metric: str, fmt: str = '.4f') -> str:
  """'0.6123 ± 0.0123 (n=3)', without the spread for a single seed."""
  mean, std = group[f'{metric}_mean'], group[f'{metric}_std']
  spread = f' ± {std:{fmt}}' if std is not None else ''
  return f"{mean:{fmt}}{spread} (n={group['n']})"


def sweep_csv(report: dict[str, Any]) -> str:
  """One row per finished point; with seed groups, also its group's mean, std and n."""
  fields, group_of = report['fields'], _seed_group_of(report)
  header = ['name', *fields, *_SWEEP_CSV_FIELDS]
  if group_of:
    header += ['group', 'group_n', 'val_accuracy_mean', 'val_accuracy_std']
  rows = []
  for row in report['points']:
    cells = [row['name'], *(row['values'][f] for f in fields),
             *(row.get(k) for k in _SWEEP_CSV_FIELDS)]
    if group_of:
      group = group_of[row['name']]
      cells += [group['name'], group['n'], group['val_accuracy_mean'],
                group['val_accuracy_std']]
    rows.append(cells)
  return reporting.csv_text(header, rows)


def _size_cells(row: dict[str, Any], checkpoint_bytes: float) -> list[str]:
  return [f"{row['params']:,} ({reporting.human(row['params'])})" if 'params' in row else '-',
          f"{row['macs']:,} ({reporting.human(row['macs'])})" if 'macs' in row else '-',
          f'{checkpoint_bytes / 1e6:.3g} MB']


def _group_table(report: dict[str, Any]) -> list[str]:
  """Seed groups: mean ± sample std over the finished seeds, n named."""
  fields = report['groups']['fields']
  rows = [[group['name'], *(str(group['values'][f]) for f in fields),
           ', '.join(str(s) for s in group['seeds']),
           *_size_cells(group, group['checkpoint_bytes_mean']),
           _mean_std(group, 'val_accuracy'),
           f"{group['train_seconds_mean']:.1f} s",
           f"{group['images_per_second_mean']:,.0f}"] for group in report['groups']['rows']]
  header = ['Group', *fields, 'Seeds', 'Params', 'MACs/image', 'Checkpoint',
            'Val accuracy (mean ± std, n seeds)', 'Train time (mean)', 'Images/s (mean)']
  return ['## Mean over seeds', '',
          *reporting.markdown_table(header, rows, [False] * (2 + len(fields)) + [True] * 6),
          '', '## Every point', '']


def sweep_markdown(report: dict[str, Any]) -> str:
  """sweep.md: one table row per finished point, sizes also in k/M/G; with seed groups,
  first one row per group (mean ± std, n)."""
  fields = report['fields']
  done, total = len(report['points']), len(report['points']) + len(report['pending'])
  rows = [[row['name'], *(str(row['values'][f]) for f in fields),
           *_size_cells(row, row['checkpoint_bytes']),
           f"{row['val_accuracy']:.4f}",
           f"{row['train_seconds']:.1f} s",
           f"{row['images_per_second']:,.0f}"] for row in report['points']]
  header = ['Point', *fields, 'Params', 'MACs/image', 'Checkpoint', 'Val accuracy',
            'Train time', 'Images/s']
  lines = [f'# Sweep: {done} of {total} points finished', '',
           f'Data: {report.get("data", "?")}.', '',
           *(_group_table(report) if report.get('groups') else []),
           *reporting.markdown_table(header, rows, [False] * (1 + len(fields)) + [True] * 6)]
  if report['pending']:
    lines += ['', 'Not finished: ' + ', '.join(report['pending']) + '.']
  if report['failed']:
    lines += ['', *(f'- {name} failed: {message}'
                    for name, message in report['failed'].items())]
  if report['points']:
    lines += ['', f'![validation accuracy against parameters]({SWEEP_CHART})']
  return '\n'.join(lines) + '\n'


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Plotted(NamedTuple):
  """What a sweep chart shows of a point or seed group."""
  values: dict[str, Any]
  params: float
  accuracy: float
  error: float | None  # the seeds' standard deviation
  name: str  # the point's or the group's
  named: bool  # the user gave the point its name
  n: int | None  # seeds in a group


def _plotted(report: dict[str, Any]) -> tuple[list[_Plotted], list[str], bool]:
  """The charts' points, fields and grid-ness: each finished point, or each seed group
  (its mean, with the seeds' standard deviation as an error bar)."""
  groups = report.get('groups')
  if groups:
    return ([_Plotted(g['values'], g['params'], g['val_accuracy_mean'],
                      g['val_accuracy_std'], g['name'], False, g['n'])
             for g in groups['rows']],
            groups['fields'], groups['grid'])
  return ([_Plotted(r['values'], r['params'], r['val_accuracy'], None, r['name'],
                    'name' in r['overrides'], None)
           for r in report['points']], report['fields'], report['grid'])


def _label(p: _Plotted, fields: Sequence[str]) -> str:
  """The point's own name if it was given one, else `field=value` of `fields`; n seeds."""
  if p.named or not fields:
    label = p.name
  else:
    label = ', '.join(f'{short_field(f)}={p.values[f]}' for f in fields)
  return label if p.n is None else f'{label} (n={p.n})'


def sweep_chart(report: dict[str, Any], field: str | None, path: str | Path, *,
                label_all: bool = False) -> None:
  """Accuracy against parameters (log x): one series per value of the other swept fields.

  Points are labelled with `field=value` (`label_all`: every swept field); seed groups
  are drawn at their mean with the seeds' standard deviation as error bars.
  """
  plotted, fields, _ = _plotted(report)
  others = [f for f in fields if f != field]
  grouped: dict[str, list[_Plotted]] = {}
  for p in plotted:
    grouped.setdefault(', '.join(f'{short_field(f)}={p.values[f]}' for f in others),
                       []).append(p)
  labelled = fields if label_all else [f for f in [field] if f]
  series = [reporting.Series(key or None,
                   [reporting.Point(p.params, p.accuracy, _label(p, labelled), p.error) for p in ps],
                   connect=bool(field) and all(_is_number(p.values[field]) for p in ps))
            for key, ps in grouped.items()]
  first = report['points'][0] if report['points'] else {}
  images = (first.get('steps') or 0) * first.get('batch_size', 0) or None
  varying = ', '.join(short_field(f) for f in ([field] if field else fields))
  seeds = ('; mean and standard deviation over seeds' if report.get('groups') else '')
  reporting.scatter_chart(
      path, series, title=f'Validation accuracy against size, varying {varying or "nothing"}',
      subtitle=f"{report.get('data', '?')}; {first.get('epochs')} epochs, "
               f"{reporting.human(images) if images else '?'} training images seen per point{seeds}",
      xlabel='parameters (log scale)', ylabel='validation accuracy (fraction)')


def sweep_chart_files(report: dict[str, Any]) -> dict[str, str | None]:
  """Chart file -> the field along its lines: sweep.png, and per field for a grid.

  sweep.png labels points with all their values; a grid of several fields also gets
  sweep_<field>.png for each field, with the others' combinations as its series. With
  seed groups, `seed` is no field of the charts: its spread is the error bars.
  """
  _, fields, grid = _plotted(report)
  files = {SWEEP_CHART: fields[0] if fields else None}
  if grid:
    files.update({f'sweep_{f}.png': f for f in fields})
  return files


def write_sweep(workdir: str | Path, report: dict[str, Any]) -> None:
  workdir = Path(workdir)
  workdir_lib.write_json(workdir / SWEEP_JSON, report)
  (workdir / SWEEP_CSV).write_text(sweep_csv(report))
  (workdir / SWEEP_MARKDOWN).write_text(sweep_markdown(report))
  for name, field in sweep_chart_files(report).items():
    sweep_chart(report, field, workdir / name, label_all=name == SWEEP_CHART)
