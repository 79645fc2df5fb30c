"""Tables and charts of results, the conventions every report follows.

Whatever a person reads comes from here, in one convention: sizes in decimal units
(MB = 10^6 bytes, as the paper), accuracies as fractions with four digits, every chart
with labelled axes and units, a subtitle naming the data, the images seen and the
epochs, ranges that include the reference points, and point labels that name their
fields and are moved apart (adjustText) so they never collide. Sweeps are rendered
by `sweep_report`, sizes by `size_report`, benchmark curves by `benchmarks.curves`. The charting packages
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
