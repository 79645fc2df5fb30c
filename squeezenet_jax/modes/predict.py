"""`--mode=predict`: the top-k classes of image files, from a trained run.

Images (files, folders, archives; any size) are prepared as the training data was
(`deploy.images`) and classified with one of the run's formats:
  checkpoint                    the latest checkpoint's `model` item (right after training)
  float32, bfloat16, int8, compressed   `--mode=export`'s files, dequantised
  onnx, onnx_int8               the ONNX files, run by ONNX Runtime (CPU)
  stablehlo                     the jax.export artifact
The JAX ones run the folded inference function (`deploy.inference`) in fixed-size
batches on the default device, one compilation. The default is `float32` where the
run was exported, else `checkpoint`. Unreadable files are reported beside the others;
only when no image at all could be read is it an error.

Nothing is written to the workdir and no lock is taken: predicting while the run
trains reads its newest committed checkpoint.
"""

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from squeezenet_jax import checkpoints
from squeezenet_jax import errors
from squeezenet_jax import exports
from squeezenet_jax import formats
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.deploy import images as images_lib
from squeezenet_jax.deploy import inference
from squeezenet_jax.deploy import predictions
from squeezenet_jax.errors import UserError
from squeezenet_jax.training import trainer as trainer_lib

FORMATS = ('checkpoint', *formats.WEIGHTS, *formats.RUNTIMES)


@dataclasses.dataclass(frozen=True)
class Predictions:
  format: str
  names: list[str]  # the images classified, in the order found
  top: list[predictions.Top]  # their top-k (class, probability), most probable first
  errors: list[tuple[str, str]]  # (file, why it could not be read)

  def text(self, as_json: bool) -> str:
    render = predictions.json_lines if as_json else predictions.table
    return render(self.names, self.top, self.errors)


def _exports(workdir: str) -> Path:
  return exports.exports_dir(workdir)


def _export_step(workdir: str, fmt: str) -> int | None:
  """The checkpoint step `fmt`'s export was made from (sizes.json), if it says."""
  path = Path(workdir) / exports.SIZES_FILE
  if not path.exists():
    return None
  report = workdir_lib.read_json(path)
  listed = {row.get('format') for row in report.get('formats', [])}
  if report.get('stablehlo'):
    listed.add('stablehlo')
  return report.get('trained', {}).get('steps') if fmt in listed else None


def _say_step(workdir: str, fmt: str) -> None:
  """Names the step an export is of; warns where training has gone on since."""
  step = _export_step(workdir, fmt)
  if step is None:
    return
  latest = max((int(p.name) for p in workdir_lib.checkpoint_dir(workdir).glob('*')
                if p.name.isdigit()), default=None)
  logging.info('Classifying with the %s export of step %d', fmt, step)
  if latest is not None and latest > step:
    logging.warning('The %s export is of step %d, but the run has trained on to step %d: '
                    'run --mode=export --workdir=%s again, or use --format=checkpoint.',
                    fmt, step, latest, workdir)


def default_format(workdir: str) -> str:
  """float32 where the run was exported, else its checkpoint."""
  return 'float32' if (_exports(workdir) / 'float32').is_dir() else 'checkpoint'


def class_names(workdir: str) -> list[str] | None:
  """The names the run's labels index (classes.json, written by training)."""
  return workdir_lib.read_classes(workdir)


def _model(workdir: str, config, fmt: str, fallback: bool) -> dict[str, Any]:
  """A JAX format's weights as float32 numpy trees (params, batch_stats)."""
  if fmt == 'checkpoint':
    checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir),
                                            read_only=True)
    _, variables, step = trainer_lib.restore_model(config, checkpointer, sharding.make_mesh(),
                                             fallback=fallback)
    logging.info('Classifying with the checkpoint of step %d', step)
    return formats.to_numpy(variables)
  directory = _exports(workdir) / fmt
  if not directory.is_dir():
    raise UserError(f'no {fmt} export in {directory}: run --mode=export --workdir={workdir} '
                    'first (or leave out --format to use the checkpoint)')
  again = (_export_again(workdir) if fmt in formats.WEIGHTS else
           f'run --mode=compress --workdir={workdir} again, after moving {directory} away')
  with errors.reading(directory, f'a {fmt} export', again):
    model = formats.read(directory)
  formats.check_matches(config, model, directory)
  return model


def _export_again(workdir: str) -> str:
  return f'run --mode=export --workdir={workdir} again (or use --format=checkpoint)'


def logits(workdir: str, config, fmt: str, images: np.ndarray,
           fallback: bool = False) -> np.ndarray:
  """Logits of uint8 [N, S, S, 3] images from the run's `fmt`."""
  if fmt in formats.RUNTIMES:
    path = formats.runtime_path(workdir, fmt)
    with errors.reading(path, f'the {fmt} export', _export_again(workdir)):
      return formats.runtime_logits(path, fmt, images, config.eval_batch_size)
  fn = inference.logits_fn(config, _model(workdir, config, fmt, fallback))
  return inference.batched_logits(fn, images, batch_size=config.eval_batch_size)


def predict(workdir: str, config: ml_collections.ConfigDict, paths: Sequence[str], *,
            fmt: str | None = None, top_k: int = 3, fallback: bool = False) -> Predictions:
  """Classifies the images under `paths` (none, if none could be read).

  `config`: the run's, with this command's overrides (`trained_run.config_for`).
  """
  fmt = fmt or default_format(workdir)
  if fmt not in FORMATS and not formats.is_weights(workdir, fmt):
    raise UserError(f'unknown --format={fmt}; expected one of: {", ".join(FORMATS)}, or a '
                    f'stage --mode=compress exported ({_exports(workdir)}/<stage>/)')
  if top_k < 1:
    raise UserError(f'--top_k={top_k} must be at least 1')
  if fmt != 'checkpoint':
    exports.check_complete(workdir)
    _say_step(workdir, fmt)
  found = images_lib.read_images(paths, config.data.image_size)
  for name, error in found.errors:
    logging.warning('cannot classify %s: %s', name, error)
  if not found.names:
    return Predictions(format=fmt, names=[], top=[], errors=found.errors)
  scores = logits(workdir, config, fmt, found.images, fallback=fallback)
  names = class_names(workdir)
  num_classes = len(names) if names else config.model.num_classes
  if scores.shape[1] != num_classes:
    raise UserError(f'the {fmt} export of {workdir} scores {scores.shape[1]} classes, the '
                    f'run has {num_classes}: it is not this run\'s; {_export_again(workdir)}')
  logging.info('Classified %d image(s) with the %s format of %s (%d unreadable)',
               len(found.names), fmt, workdir, len(found.errors))
  return Predictions(format=fmt, names=found.names,
                     top=predictions.top_k(scores, top_k, names), errors=found.errors)


def run(workdir: str, config: ml_collections.ConfigDict, paths: Sequence[str], *,
        fmt: str | None = None, top_k: int = 3, as_json: bool = False,
        fallback: bool = False) -> Predictions:
  """Prints a table, or JSON lines (one object per image or unreadable file).

  Raises UserError (one line, exit 2) when no image could be classified; with
  `--json` each unreadable file's object is printed first.
  """
  result = predict(workdir, config, paths, fmt=fmt, top_k=top_k, fallback=fallback)
  if result.names or as_json:
    sys.stdout.write(result.text(as_json))
    sys.stdout.flush()
  if not result.names:
    shown = '; '.join(f'{name}: {error}' for name, error in result.errors[:3])
    more = f' (and {len(result.errors) - 3} more)' if len(result.errors) > 3 else ''
    raise UserError(f'no image could be classified: {shown}{more}')
  return result
