"""Learning curves of finished or running training runs: a table and two charts.

    python -m benchmarks.curves RUN [RUN ...] --out=DIR [--targets=0.85,0.9]

Each RUN is a workdir (its `config.json` and `metrics.jsonl`). Writes `DIR/curves.md`
(per run: epochs and images seen to each target validation accuracy, the best and the
final accuracy, with TTA where the run scored it, training time) and
`DIR/curve_epochs.png` / `DIR/curve_images.png` (validation accuracy against epochs and
against training images seen). A run's name is its folder's name. Nothing is written
over: DIR must not hold these files already.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from squeezenet_jax import reporting
from squeezenet_jax.errors import UserError
from squeezenet_jax.workdir import CONFIG_FILE, METRICS_FILE

FILES = ('curves.md', 'curve_epochs.png', 'curve_images.png')


def read_run(workdir: str) -> dict[str, Any]:
  """The run's config and its evaluated epochs (the last entry per epoch, as resumed)."""
  path = Path(workdir)
  try:
    config = json.loads((path / CONFIG_FILE).read_text())
    lines = (path / METRICS_FILE).read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
  except (OSError, ValueError) as e:
    raise UserError(f'{workdir} is not a readable training run ({e}); give a workdir '
                    f'with {CONFIG_FILE} and {METRICS_FILE}') from None
  by_epoch = {e['epoch']: e for e in events if 'epoch' in e}
  epochs = [by_epoch[k] for k in sorted(by_epoch)]
  if not any('val_accuracy' in e for e in epochs):
    raise UserError(f'{workdir} has no evaluated epoch in {METRICS_FILE} yet')
  return {'name': path.resolve().name, 'config': config, 'epochs': epochs}


def first_reaching(run: dict[str, Any], target: float, key: str = 'val_accuracy'):
  """(epoch, images seen) of the first evaluation at or above `target`, else None."""
  for e in run['epochs']:
    if e.get(key, -1.0) >= target:
      return e['epoch'], e['step'] * run['config']['batch_size']
  return None


def summary_row(run: dict[str, Any], targets: list[float]) -> list[str]:
  evaluated = [e for e in run['epochs'] if 'val_accuracy' in e]
  last = evaluated[-1]
  cells = [run['name'], str(run['epochs'][-1]['epoch'])]
  for target in targets:
    reached = first_reaching(run, target)
    cells.append(f'{reached[0]} ({reporting.human(reached[1])})' if reached else 'not reached')
  cells.append(f"{max(e['val_accuracy'] for e in evaluated):.4f}")
  cells.append(f"{last['val_accuracy']:.4f}")
  cells.append(f"{last['val_accuracy_tta']:.4f}" if 'val_accuracy_tta' in last else '')
  cells.append(f"{last['train_accuracy']:.4f}")
  seconds = sum(e.get('epoch_seconds', 0.0) for e in run['epochs'])
  cells.append(f'{seconds / 60:.1f} min')
  return cells


def markdown(runs: list[dict[str, Any]], targets: list[float]) -> str:
  header = (['run', 'epochs']
            + [f'epochs to {t:.0%} (images)' for t in targets]
            + ['best val', 'final val', 'final val TTA', 'final train acc', 'train time'])
  lines = ['# Learning curves', '',
           'Validation accuracy on the held-out images; train accuracy is on the '
           "augmented batches of the run's last epoch. Train time excludes compiling "
           'and evaluation.', '',
           *reporting.markdown_table(header, [summary_row(r, targets) for r in runs])]
  return '\n'.join(lines) + '\n'


def charts(runs: list[dict[str, Any]], out: Path) -> None:
  subtitle = reporting.data_label(runs[0]['config'])
  for file, xlabel, x_of in (
      ('curve_epochs.png', 'epoch', lambda run, e: e['epoch']),
      ('curve_images.png', 'training images seen',
       lambda run, e: e['step'] * run['config']['batch_size'])):
    series = [reporting.Series(run['name'], [
        reporting.Point(x_of(run, e), e['val_accuracy'], '')
        for e in run['epochs'] if 'val_accuracy' in e], connect=True) for run in runs]
    reporting.scatter_chart(out / file, series, title='Validation accuracy',
                            subtitle=subtitle, xlabel=xlabel, ylabel='validation accuracy',
                            log_x=False)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('runs', nargs='+', help='training workdirs')
  parser.add_argument('--out', required=True, help='folder for curves.md and the charts')
  parser.add_argument('--targets', default='0.85,0.9',
                      help='validation accuracies to time, comma-separated')
  args = parser.parse_args(argv)
  try:
    targets = [float(t) for t in args.targets.split(',')]
  except ValueError:
    parser.exit(2, f'error: --targets must be numbers such as 0.85,0.9, not {args.targets}\n')
  try:
    out = Path(args.out)
    existing = [f for f in FILES if (out / f).exists()]
    if existing:
      raise UserError(f'{out} already holds {", ".join(existing)}; choose another --out '
                      'or remove them')
    runs = [read_run(w) for w in args.runs]
    out.mkdir(parents=True, exist_ok=True)
    (out / 'curves.md').write_text(markdown(runs, targets))
    charts(runs, out)
  except (UserError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(out / 'curves.md')


if __name__ == '__main__':
  main()
