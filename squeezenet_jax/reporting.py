"""Tables and charts of results, for sweeps, size reports and benchmarks alike.

Whatever a person reads comes from here, in one convention: sizes in decimal units
(MB = 10^6 bytes, as the paper), accuracies as fractions with four digits, every chart
with labelled axes and units, a subtitle naming the data, the images seen and the
epochs, ranges that include the reference points, and point labels that name their
fields and are moved apart (adjustText) so they never collide. The charting packages
(matplotlib, adjustText) are imported only when a chart is drawn: tables and JSON never
depend on them.
"""

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from absl import logging

from squeezenet_jax import workdir as workdir_lib

# An accuracy axis spans at least this much, so noise never fills a chart.
MIN_ACCURACY_SPAN = 0.1


# ----------------------------------------------------------------------------
# Numbers and tables.


def human(n: float, unit: str = '') -> str:
  """1234567 -> '1.23 M' (decimal prefixes)."""
  for threshold, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(n) >= threshold:
      return f'{n / threshold:.3g} {prefix}{unit}'
  return f'{n:g} {unit}'.rstrip()


def megabytes(n: int) -> str:
  """Bytes with their MB (10^6), e.g. '855,047 (0.855 MB)'."""
  return f'{n:,} ({n / 1e6:.3g} MB)'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   numeric: Sequence[bool] | None = None) -> list[str]:
  """A markdown table; `numeric` columns are right-aligned."""
  numeric = numeric or [False] * len(header)
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + ''.join('---:|' if n else '---|' for n in numeric)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return lines


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  return out.getvalue()


def data_label(config: Mapping[str, Any]) -> str:
  """Where a run's images came from, in a few words (for chart subtitles)."""
  data = config['data']
  if data['source'] == 'folder':
    names = ', '.join(os.path.basename(p.strip().rstrip('/')) for p in data['path'].split(','))
    return f'folder {names}'
  if data['source'] == 'tfds':
    return f"tfds {data['dataset']}"
  return 'synthetic data'


def run_subtitle(config: Mapping[str, Any], epochs: int | None, images_seen: int | None,
                 evaluated: str | None = None) -> str:
  """'folder x.tar.xz; 12 epochs, 1.1 M training images seen; validation: 5,000 images'."""
  parts = [data_label(config)]
  if epochs is not None and images_seen is not None:
    parts.append(f'{epochs} epochs, {human(images_seen)} training images seen')
  if evaluated:
    parts.append(evaluated)
  return '; '.join(parts)


# ----------------------------------------------------------------------------
# Charts.


class Point(NamedTuple):
  x: float
  y: float
  label: str
  yerr: float | None = None


class Series(NamedTuple):
  name: str | None  # legend entry (None: no entry)
  points: Sequence[Point]
  connect: bool = False  # a line suggests an order between the points


class Reference(NamedTuple):
  """A reference line: vertical at x, or horizontal at y, with its legend entry."""
  label: str
  x: float | None = None
  y: float | None = None
  style: str = '--'


def _minor_tick_labelled(value: float, decades: float) -> bool:
  """Every minor tick of a log axis under 1.2 decades wide; 2x and 5x up to 4; none above."""
  if decades <= 1.2:
    return True
  mantissa = value / 10**math.floor(math.log10(value) + 1e-9)
  return decades <= 4 and any(abs(mantissa - m) < 1e-6 for m in (2, 5))


def _limits(values: Sequence[float], log: bool, min_span: float = 0.0,
            bounds: tuple[float, float] | None = None) -> tuple[float, float]:
  """Axis limits around `values` with margins; at least `min_span` wide (linear axes)."""
  lo, hi = min(values), max(values)
  if log:
    return lo / 1.6, hi * 1.6
  span = max(hi - lo, min_span)
  middle = (lo + hi) / 2
  lo, hi = middle - 0.6 * span, middle + 0.6 * span
  if bounds:
    lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
  return lo, hi


def scatter_chart(path: str | Path, series: Sequence[Series], *, title: str, subtitle: str,
                  xlabel: str, ylabel: str, log_x: bool = True, x_unit: str = '',
                  references: Sequence[Reference] = (), accuracy_axis: bool = True) -> None:
  """A labelled scatter: the chart of every comparison in this project.

  x ticks read in decimal units (`x_unit`: 'B' gives 100 kB, 1 MB, ...). Without
  adjustText installed the labels stay where their points are (a warning says so).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7.5, 5))
  texts, xs, ys = [], [], []
  for s in series:
    points = list(s.points)
    errors = [p.yerr for p in points]
    ax.errorbar([p.x for p in points], [p.y for p in points],
                yerr=errors if any(e is not None for e in errors) else None,
                marker='o', linestyle='-' if s.connect else 'none', capsize=3,
                label=s.name, zorder=3)
    for p in points:
      if p.label:  # unlabelled points (e.g. a frontier line's) get no text
        texts.append(ax.text(p.x, p.y, p.label, fontsize=8))
      xs.append(p.x)
      ys.append(p.y)
      if p.yerr is not None:  # the range shows the whole error bar
        ys += [p.y - p.yerr, p.y + p.yerr]
  for ref in references:
    if ref.x is not None:
      ax.axvline(ref.x, color='gray', linestyle=ref.style, label=ref.label)
      xs.append(ref.x)
    else:
      ax.axhline(ref.y, color='gray', linestyle=ref.style, label=ref.label)
      ys.append(ref.y)
  if log_x:
    ax.set_xscale('log')
  if xs:
    ax.set_xlim(*_limits(xs, log_x))
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: human(v, x_unit)))
  # A narrow log range may hold no major tick: label its minor ticks, fewer the wider it is.
  decades = math.log10(max(ax.get_xlim()) / min(ax.get_xlim())) if log_x else 0.0
  ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
      lambda v, _: human(v, x_unit) if _minor_tick_labelled(v, decades) else ''))
  ax.tick_params(axis='x', which='minor', labelsize=7)
  if xs:
    ax.set_ylim(*_limits(ys, False, MIN_ACCURACY_SPAN if accuracy_axis else 0.0,
                         (0.0, 1.0) if accuracy_axis else None))
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  fig.suptitle(title, fontsize=12)
  ax.set_title(subtitle, fontsize=9, color='dimgray')
  ax.grid(True, which='both', alpha=0.3)
  if any(s.name for s in series) or references:
    ax.legend(fontsize=8, loc='best')
  fig.tight_layout()
  if texts:
    try:
      from adjustText import adjust_text  # pylint: disable=g-import-not-at-top
    except ImportError:
      logging.warning('adjustText is not installed: the labels of %s may overlap', path)
    else:
      adjust_text(texts, ax=ax, arrowprops={'arrowstyle': '-', 'color': 'gray', 'lw': 0.5})
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ----------------------------------------------------------------------------
# Sweeps (sweep.json's dict, see `sweeps.build_report`).

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
  return csv_text(header, rows)


def _size_cells(row: dict[str, Any], checkpoint_bytes: float) -> list[str]:
  return [f"{row['params']:,} ({human(row['params'])})" if 'params' in row else '-',
          f"{row['macs']:,} ({human(row['macs'])})" if 'macs' in row else '-',
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
          *markdown_table(header, rows, [False] * (2 + len(fields)) + [True] * 6),
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
           *markdown_table(header, rows, [False] * (1 + len(fields)) + [True] * 6)]
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
  series = [Series(key or None,
                   [Point(p.params, p.accuracy, _label(p, labelled), p.error) for p in ps],
                   connect=bool(field) and all(_is_number(p.values[field]) for p in ps))
            for key, ps in grouped.items()]
  first = report['points'][0] if report['points'] else {}
  images = (first.get('steps') or 0) * first.get('batch_size', 0) or None
  varying = ', '.join(short_field(f) for f in ([field] if field else fields))
  seeds = ('; mean and standard deviation over seeds' if report.get('groups') else '')
  scatter_chart(
      path, series, title=f'Validation accuracy against size, varying {varying or "nothing"}',
      subtitle=f"{report.get('data', '?')}; {first.get('epochs')} epochs, "
               f"{human(images) if images else '?'} training images seen per point{seeds}",
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


# ----------------------------------------------------------------------------
# Sizes (sizes.json's dict, see `size_report.build`).

SIZES_JSON, SIZES_MARKDOWN, SIZES_CHART = 'sizes.json', 'sizes.md', 'sizes.png'


def model_name(model: Mapping[str, Any]) -> str:
  if model['name'] == 'squeezenet':
    return f"SqueezeNet {model['version']}"
  return 'AlexNet' if model['name'] == 'alexnet' else model['name']


def _optional(row: dict[str, Any], key: str, spec: str) -> str:
  return format(row[key], spec) if row.get(key) is not None else ''


def sizes_markdown(report: dict[str, Any]) -> str:
  """A readable sizes.md: exports, the AlexNet baseline, then the training checkpoints."""
  alexnet = report['alexnet']
  formats = report['formats'] + ([report['stablehlo']] if report.get('stablehlo') else [])
  rows = [[row['format'], megabytes(row['bytes']), _optional(row, 'bits_per_param', '.2f'),
           f"{row['vs_float32']:.3f}",
           f"{row['alexnet_ratio']:,.0f}x" if row['alexnet_ratio'] else '-',
           f"{row['accuracy']:.4f}", f"{row['accuracy_delta']:+.4f}",
           _optional(row, 'sparsity', '.1%'), _optional(row, 'finetune_epochs', 'd')]
          for row in formats]
  if alexnet:
    rows.append([f"AlexNet float32 (analytic, {alexnet['params']:,} params)",
                 megabytes(alexnet['float32_bytes']), '32.00', '', '1x', '', '', '', ''])
  export = report['export']
  training = report['checkpoints']['steps'][str(report['checkpoints']['latest_step'])]
  lines = [
      f"# Size of {model_name(report['model'])}: {report['params']:,} parameters", '',
      f"Accuracy on `{report['eval_split']}` ({report['eval_images']:,} images), each "
      'export reloaded from disk. Analytic float32 size (params x 4): '
      f"{megabytes(report['analytic_bytes'])}. MB = 10^6 bytes.", '',
      *markdown_table(['Format', 'Bytes on disk', 'Bits/param', 'vs float32',
                       'AlexNet fp32 / this', 'Accuracy', 'Δ vs float32', 'Sparsity',
                       'Fine-tune epochs'], rows, [False] + [True] * 8),
      '', '`float32` is the inference checkpoint: parameters and BN statistics, '
      'without the optimizer state of the training checkpoint, which weighs '
      f"{megabytes(training['total_bytes'])}. `compressed`: "
      f"{export['prune_fraction']:.0%} of each kernel pruned, {export['bits']}-bit "
      'per-kernel codebooks, a byte per index, lzma. Bits/param: file bits per '
      f"parameter ({report['params']:,}).", *_deploy_markdown(formats),
      *(f"\n`{row['format']}` could not be exported: {row['error']}"
        for row in report.get('failed_formats', [])), '',
      *_compress_markdown(report),
      *_checkpoint_markdown(report['checkpoints'])]
  return '\n'.join(lines) + '\n'


def _deploy_markdown(formats: list[dict[str, Any]]) -> list[str]:
  """What the deployable formats are, where the report has them."""
  by_name = {row['format']: row for row in formats}
  if 'onnx' not in by_name:
    return []
  lines = ['', '`onnx`, `onnx_int8`, `stablehlo`: the inference function (BatchNorm folded '
           'into the convs; uint8 NHWC pixels in, normalisation inside, logits out), scored '
           'by ONNX Runtime (CPU) and by `jax.export` with the weights inside.']
  int8 = by_name.get('onnx_int8')
  if int8 and 'calibration_split' in int8:
    lines[-1] += (" `onnx_int8`: ONNX Runtime's static quantizer (QDQ, int8 weights per "
                  f"output channel, int8 activations) calibrated on {int8['calibration_images']:,} "
                  f"images of `{int8['calibration_split']}`.")
  return lines


_METHODS = {'prune': 'gradual magnitude pruning to {sparsity:.0%} (Zhu & Gupta), {bits}-bit '
                     'codes',
            'share': 'trained k-means weight sharing, {bits}-bit codebooks per kernel',
            'qat': 'quantization-aware training (qwix), int{bits} weights per output channel'}


def _compress_markdown(report: dict[str, Any]) -> list[str]:
  """What each `--mode=compress` format is, and the reference model at equal accuracy."""
  compress = report.get('compress')
  if not compress:
    return []
  names = [r['format'] for r in report['formats'] if r.get('method')]
  lines = ['## Fine-tuned compression (`--mode=compress`)', '']
  for name in names:
    stage = compress.get(name, {})
    if not stage:
      continue
    start = f"from `{stage['start']}`" if stage['start'] else 'from the checkpoint'
    lines.append(f"- `{name}`: {_METHODS[stage['method']].format(**stage)}, {start}, "
                 f"{stage['epochs']} epoch{'' if stage['epochs'] == 1 else 's'} "
                 f"({stage['optimizer']}, peak learning rate "
                 f"{stage['learning_rate']:g}).")
  lines += ['', f"Codes {compress['coding']}-coded, vectors {compress['vector_dtype']}; "
            'fine-tune epochs count the stages a format starts from.', '']
  reference = report.get('reference')
  if reference:
    lines += _reference_markdown(report, reference)
  return lines


def _reference_markdown(report: dict[str, Any], reference: dict[str, Any]) -> list[str]:
  rows = [[row['format'], megabytes(row['bytes']), _optional(row, 'bits_per_param', '.2f'),
           f"{row['accuracy']:.4f}", f"{row['accuracy_delta']:+.4f}"]
          for row in reference['formats']]
  name = model_name(reference['model'])
  lines = [f"### {name} ({reference['params']:,} parameters, `{reference['workdir']}`)", '',
           *markdown_table(['Format', 'Bytes on disk', 'Bits/param', 'Accuracy',
                            'Δ vs float32'], rows, [False] + [True] * 4), '']
  equal = reference.get('equal_accuracy')
  if equal:
    lines += [f"At equal accuracy (at least {equal['accuracy']:.4f}, the weaker float32 "
              f"less one point), {model_name(report['model'])} needs "
              f"{megabytes(equal['bytes'])} (`{equal['format']}`) and {name} "
              f"{megabytes(equal['reference_bytes'])} (`{equal['reference_format']}`): "
              f"{equal['ratio']:,.1f}x.", '']
  return lines


def _checkpoint_markdown(sizes: dict[str, Any]) -> list[str]:
  rows = [[step, f"{s['model_bytes']:,}", f"{s['opt_state_bytes']:,}",
           f"{s['progress_bytes']:,}", f"{s['metadata_bytes']:,}", f"{s['total_bytes']:,}"]
          for step, s in sizes['steps'].items()]
  raw = ', '.join(f'{item} {n:,}' for item, n in sizes['raw_bytes'].items())
  ratios = ', '.join(f'{item} {r:.3f}x' for item, r in sizes['compression'].items())
  return ['## Training checkpoints (orbax)', '',
          *markdown_table(['Step', 'Model (params + BN stats)', 'Optimizer state',
                           'Progress', 'Metadata', 'Total'], rows, [True] * 6),
          '', f'In memory: {raw} bytes. Orbax compression of step {sizes["latest_step"]} '
          f'(in memory / on disk, above 1 when the files are smaller): {ratios}; '
          f'{_codec_text(sizes["codec"])}.']


def _codec_text(codec: dict[str, Any] | None) -> str:
  if not codec:
    return 'codec unknown'

  def name(c):
    return ' level '.join(str(c[k]) for k in ('id', 'level') if k in c) if c else 'none'

  return f"arrays {name(codec['arrays'])}, OCDBT index {name(codec['index'])}"


def _frontier_series(name: str, rows: list[dict[str, Any]], prefix: str = '') -> list[Series]:
  """A model's formats as labelled points, and its accuracy-against-bytes frontier."""
  points = [Point(row['bytes'], row['accuracy'],
                  f"{prefix}{row['format']} ({row['bytes'] / 1e6:.3g} MB)") for row in rows]
  best, frontier = -1.0, []
  for p in sorted(points, key=lambda p: (p.x, -p.y)):
    if p.y > best:
      frontier.append(Point(p.x, p.y, ''))
      best = p.y
  return [Series(name, points), Series(f'{name} frontier', frontier, connect=True)]


def sizes_chart(report: dict[str, Any], path: str | Path) -> None:
  """Accuracy against bytes on disk (log x), with 1 MB and AlexNet's float32 size.

  With `--mode=compress`'s formats, each model's frontier is drawn (the formats no
  smaller one beats), and a reference run's formats (AlexNet) on the same axes.
  """
  name = model_name(report['model'])
  reference = report.get('reference')
  if report.get('compress') or reference:
    series = _frontier_series(name, report['formats'])
    if reference:
      series += _frontier_series(model_name(reference['model']), reference['formats'],
                                 prefix=f"{model_name(reference['model'])} ")
  else:
    series = [Series(None, [Point(row['bytes'], row['accuracy'],
                                  f"{row['format']} ({row['bytes'] / 1e6:.3g} MB)")
                            for row in report['formats']])]
  references = [Reference('1 MB', x=1e6, style=':')]
  if report['alexnet']:
    references.append(Reference(
        f"AlexNet float32 ({report['alexnet']['float32_bytes'] / 1e6:.0f} MB)",
        x=report['alexnet']['float32_bytes']))
  trained = report.get('trained', {})
  if reference:
    name = f"{name} and {model_name(reference['model'])}"
  scatter_chart(
      path, series,
      title=f'{name}: accuracy against size on disk',
      subtitle=run_subtitle(report.get('config', {'data': {'source': 'synthetic'}}),
                            trained.get('epochs'), trained.get('images_seen'),
                            f"scored on {report['eval_split']} "
                            f"({report['eval_images']:,} images)"),
      xlabel='bytes on disk (log scale; MB = 10^6 bytes)', x_unit='B',
      ylabel=f"accuracy on {report['eval_split']} (fraction)", references=references)


def write_sizes(workdir: str | Path, report: dict[str, Any]) -> None:
  workdir_lib.write_json(Path(workdir) / SIZES_JSON, report)
  (Path(workdir) / SIZES_MARKDOWN).write_text(sizes_markdown(report))
  sizes_chart(report, Path(workdir) / SIZES_CHART)
