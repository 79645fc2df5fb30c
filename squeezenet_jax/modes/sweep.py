"""`--mode=sweep`: train every point of a sweep, then compare them (see `sweeps`).

Every point is checked (fields, model, optimizer, batch sizes, its directory) before
any trains, so a typo fails in seconds, not hours. Points run one after another in
this process, each in workdir/<name>/ on all local devices with the normal trainer, or
side by side in worker processes or on Ray (`sweep_launchers`, the same trainer):
rerunning the sweep skips finished points (results.json for all epochs) and resumes
an interrupted one from its checkpoint; with `--allow_config_change` it continues
points of another config, e.g. for more epochs. sweep.json, sweep.csv, sweep.md and the
charts are rewritten after every point trained, so a crash keeps what was finished. A
point that fails (e.g. diverges) does not stop the others; the sweep then ends with an
error naming it. SIGTERM/SIGINT stop the sweep after the current point's checkpoint
(exit 143/130 from main.py), or, with workers, after every running point's; rerunning
it resumes there.
"""

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import ml_collections
from absl import logging

from squeezenet_jax import accounting
from squeezenet_jax import sweep_report
from squeezenet_jax import sharding
from squeezenet_jax import sweep_launchers
from squeezenet_jax import sweeps
from squeezenet_jax import validation
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.sweep_launchers import inline
from squeezenet_jax.training import optim


def check_point(point: sweeps.Point, point_dir: Path, allow_config_change: bool = False) -> None:
  """Fails now, before anything trains, on what would fail when the point's turn comes."""
  try:
    validation.validate(point.config)
    accounting.summarize(point.config)  # builds the model: variants, widths, image size
    optim.make_optimizer(point.config, steps_per_epoch=1)
    mesh = sharding.make_mesh()
    for name in ('batch_size', 'eval_batch_size'):
      sharding.check_batch_size(name, point.config[name], mesh)
    workdir_lib.check_claim(str(point_dir), point.config, allow_config_change)
  except UserError as e:
    raise UserError(f'sweep point {point.index} ({point.name}): {e}') from None


def is_finished(point: sweeps.Point, point_dir: Path) -> bool:
  path = point_dir / workdir_lib.RESULTS_FILE
  return path.exists() and workdir_lib.read_json(path).get('epochs') == point.config.num_epochs


def run(config: ml_collections.ConfigDict, workdir: str, sweep: Sequence[Mapping[str, Any]],
        *, fixed: Iterable[str] = (), allow_config_change: bool = False,
        launcher: sweep_launchers.Launcher | None = None) -> dict[str, Any]:
  """Trains every unfinished point of `sweep` on `config`; returns sweep.json's dict.

  `fixed`: the fields set on the command line (they hold for every point).
  `allow_config_change`: continue points whose workdir holds another config, e.g. to
  train a finished sweep for more epochs.
  `launcher`: how the points train (`sweep_launchers.make_launcher`); default inline.
  """
  points = sweeps.make_points(config, sweep, fixed)
  dirs = {p.name: Path(workdir) / p.name for p in points}
  for point in points:
    check_point(point, dirs[point.name], allow_config_change)
  rows, failed, todo = {}, {}, []
  with workdir_lib.locked(workdir, 'sweep'):
    for point in points:
      if is_finished(point, dirs[point.name]):
        logging.info('Sweep point %d/%d %s: finished, skipped', point.index, len(points),
                     point.name)
        rows[point.name] = sweeps.row(point, dirs[point.name])
      else:
        todo.append(point)

    def finished(point: sweeps.Point, error: str | None) -> None:
      if error is None:
        rows[point.name] = sweeps.row(point, dirs[point.name])
        logging.info('Sweep point %d/%d %s: finished, val_accuracy %.4f', point.index,
                     len(points), point.name, rows[point.name]['val_accuracy'])
      else:
        logging.error('Sweep point %s failed: %s', point.name, error)
        failed[point.name] = error
      if len(rows) + len(failed) < len(points):  # the final report is written below
        sweep_report.write_sweep(workdir, sweeps.build_report(points, rows, failed))

    try:
      (launcher or inline.run)(todo, dirs, finished, workdir=workdir,
                               allow_config_change=allow_config_change)
    finally:  # also when preempted: the report keeps every finished point
      report = sweeps.build_report(points, rows, failed)
      sweep_report.write_sweep(workdir, report)
  print(sweep_report.sweep_markdown(report))
  if failed:
    raise UserError(f'{len(failed)} of {len(points)} sweep points failed: ' + '; '.join(
        f'{name}: {message}' for name, message in failed.items()))
  return report
