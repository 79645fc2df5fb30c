"""`--mode=export`: inference exports of a run's latest checkpoint, each re-scored from disk.

Formats, under `workdir/exports/<format>/`:
  float32     orbax: parameters and BatchNorm statistics, no optimizer state.
  bfloat16    orbax: parameters cast to bfloat16 (BN statistics stay float32).
  int8        orbax: kernels int8 with a float32 scale per output channel.
  compressed  pruned, k-means-shared kernels (Deep Compression) in the one compressed
              file (`compression.container`), a byte per code, lzma'd.
  onnx, onnx_int8, stablehlo  the inference function for other runtimes (`export_deploy`).
Each export is read back from disk, dequantised to float32 and scored with the code
of `--mode=eval`, so the accuracy reported is the accuracy of the bytes reported.
The report goes to sizes.json, sizes.md and sizes.png (see `size_report`): first with
the orbax and lzma formats, then again with the deployable ones, so that the sizes
never depend on the ONNX toolchain. A deployable format that fails (a missing
jax2onnx, a converter error) is named in `failed_formats` and in one `error:` line,
after every other format is written.

Settings come from the `export` block of the run's config.json; `--config.export.*`
and `--config.data.*` on the command line override them for this export (e.g.
`--config.export.bits=4`).
"""

import shutil
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from flax import traverse_util

from squeezenet_jax import checkpoints
from squeezenet_jax import errors
from squeezenet_jax import exports
from squeezenet_jax import quantize
from squeezenet_jax import reporting
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax import size_report
from squeezenet_jax.compression import container
from squeezenet_jax.errors import UserError
from squeezenet_jax.errors import WriteError
from squeezenet_jax.modes import export_deploy
from squeezenet_jax.training import setup

FORMATS = ('float32', 'bfloat16', 'int8', 'compressed')
EXPORTS_DIR = exports.EXPORTS_DIR
_MODEL_PARTS = ('params', 'batch_stats')

Tree = dict[str, Any]


def to_numpy(variables: setup.ModelVars) -> Tree:
  """Model variables as nested dicts of numpy arrays, what the encoders take."""
  return jax.device_get({part: nnx.to_pure_dict(variables[part]) for part in _MODEL_PARTS})


def encode(fmt: str, model: Tree, settings: ml_collections.ConfigDict) -> Tree:
  """What `fmt` stores: only the parameters change, BN statistics stay float32."""
  params = model['params']
  if fmt == 'bfloat16':
    params = quantize.to_bfloat16(params)
  elif fmt == 'int8':
    params = quantize.encode_int8(params)
  elif fmt == 'compressed':
    params = quantize.encode_compressed(params, settings.bits, settings.prune_fraction)
  return {'params': params, 'batch_stats': model['batch_stats']}


def save(fmt: str, model: Tree, directory: Path, settings: ml_collections.ConfigDict) -> None:
  """Writes the export of `fmt` to `directory`, replacing an earlier one."""
  shutil.rmtree(directory, ignore_errors=True)
  stored = encode(fmt, model, settings)
  if fmt == 'compressed':
    directory.mkdir(parents=True)
    container.write(directory / container.FILE, stored, coding='packed')
  else:
    # Outermost: orbax reports a failed write when the checkpointer closes.
    with checkpoints.writing(f'the {fmt} export in {directory}'), (
        ocp.StandardCheckpointer()) as checkpointer:
      checkpointer.save(directory.absolute(), stored)


def load(fmt: str, directory: Path) -> Tree:
  """An export read back from disk and dequantised to float32."""
  if fmt == 'compressed':
    stored = container.read(directory / container.FILE)
  else:
    with ocp.StandardCheckpointer() as checkpointer:
      stored = checkpointer.restore(directory.absolute())
  # A part without arrays (no BatchNorm) may not survive the round trip.
  return quantize.dequantize({part: stored.get(part, {}) for part in _MODEL_PARTS})


def check_matches(config: ml_collections.ConfigDict, model: Tree, source: Path) -> None:
  """Refuses weights of another model (an export copied from another run, or edited)."""
  _, abstract = setup.abstract_model(config)
  expected = traverse_util.flatten_dict(
      {part: nnx.to_pure_dict(abstract[part]) for part in _MODEL_PARTS}, sep='/')
  found = traverse_util.flatten_dict(model, sep='/')
  shapes = {k: tuple(getattr(found[k], 'shape', ())) for k in found}
  wrong = sorted(set(expected) ^ set(found)) or sorted(
      k for k in expected if shapes[k] != tuple(expected[k].shape))
  if wrong:
    raise UserError(f'{source} holds the weights of another model (first difference: '
                    f'{wrong[0]}): it is not an export of this run\'s config; run '
                    '--mode=export again')


def _filled(template: nnx.State, values: Tree, placement) -> nnx.State:
  """A copy of `template` holding `values`, which must match it leaf for leaf."""

  def check(ref, x):
    if ref.shape != x.shape:
      raise UserError(f'an export leaf has shape {x.shape} where the model has {ref.shape}: '
                      'the export is of another model')
    return jax.device_put(x.astype(ref.dtype), placement)

  state = jax.tree.map(lambda x: x, template)
  nnx.replace_by_pure_dict(state, jax.tree.map(check, nnx.to_pure_dict(template), values))
  return state


def score(restored: setup.RestoredRun, model: Tree) -> dict[str, float]:
  """Scores decoded weights as `--mode=eval` scores the checkpoint."""
  placement = sharding.replicated(restored.scorer.mesh)
  return restored.score({part: _filled(restored.variables[part], model[part], placement)
                         for part in _MODEL_PARTS})


def export_format(restored: setup.RestoredRun, fmt: str, model: Tree,
                  transaction: exports.Transaction,
                  settings: ml_collections.ConfigDict) -> dict[str, Any]:
  """Saves one format (uncommitted), reloads it from disk and scores it."""
  directory = transaction.directory(fmt)
  save(fmt, model, directory, settings)
  scores = score(restored, load(fmt, directory))
  row = {'format': fmt, 'bytes': checkpoints.directory_bytes(directory),
         'accuracy': scores['accuracy'], 'loss': scores['loss'],
         'path': f'{EXPORTS_DIR}/{fmt}'}
  logging.info('%-10s %12s bytes  accuracy %.4f', fmt, f'{row["bytes"]:,}', row['accuracy'])
  return row


def run(workdir: str, config: ml_collections.ConfigDict,
        fallback: bool = False) -> dict[str, Any]:
  """Exports every format, then writes and returns the size report (sizes.json).

  `config`: the run's, with this command's overrides (`trained_run.config_for`).
  """
  settings = config.export
  with workdir_lib.locked(workdir, 'export'):
    restored = setup.RestoredRun(workdir, config, fallback=fallback)
    model = to_numpy(restored.variables)
    transaction = exports.Transaction(workdir)
    try:
      rows = export_rows(restored, model, settings, transaction)
      # Formats of other modes (--mode=compress) stay in the report.
      previous = size_report.previous_report(workdir, restored.split, restored.num_images,
                                             restored.step)
      # Until the deployable formats are rewritten below, none of them is reported.
      kept = {k: v for k, v in size_report.carried(previous).items() if k != 'stablehlo'}
      earlier = [row for row in size_report.kept_rows(previous, rows)
                 if row['format'] not in export_deploy.FORMATS]
      commit(transaction, workdir, build_report(restored, earlier, settings, **kept))
      transaction = exports.Transaction(workdir)
      try:
        deployed = export_deploy.export(restored, model, transaction)
      except OSError as e:  # a full disk: the user's to fix, as everywhere
        raise WriteError(f'could not save the deployable exports in {transaction.partial}: '
                         f'{e.strerror or e}') from None
      except (UserError, WriteError):
        raise
      except Exception as e:  # pylint: disable=broad-except
        failure = f'{type(e).__name__}: {errors.first_line(e)}'
        transaction.abort()
        reporting.write_sizes(workdir, {
            **build_report(restored, earlier, settings, **kept, failed_formats=[
                {'format': fmt, 'error': failure} for fmt in export_deploy.FORMATS]),
            exports.ID_KEY: exports.committed_id(workdir)})
        raise UserError(f'the ONNX and StableHLO exports failed ({failure}); the other '
                        f'formats are in {Path(workdir) / reporting.SIZES_JSON}') from e
      report = build_report(restored, size_report.kept_rows(previous, rows + deployed.rows),
                            settings, **kept, stablehlo=deployed.stablehlo)
      return commit(transaction, workdir, report)
    finally:
      transaction.abort()  # after an error: what was not committed is dropped


def commit(transaction: exports.Transaction, workdir: str,
           report: dict[str, Any]) -> dict[str, Any]:
  """Swaps the transaction's formats in with `report` as sizes.json; returns it."""
  stamped = {}

  def write(export_id: str) -> None:
    stamped.update(report, **{exports.ID_KEY: export_id})
    reporting.write_sizes(workdir, stamped)

  reported = [row['format'] for row in report['formats']]
  transaction.commit(write, reported + (['stablehlo'] if report.get('stablehlo') else []))
  return stamped


def export_rows(restored: setup.RestoredRun, model: Tree,
                settings: ml_collections.ConfigDict,
                transaction: exports.Transaction) -> list[dict[str, Any]]:
  """The orbax and lzma formats (`FORMATS`), exported (uncommitted), reloaded and scored."""
  return [export_format(restored, fmt, model, transaction, settings) for fmt in FORMATS]


def build_report(restored: setup.RestoredRun, rows: list[dict[str, Any]],
                 settings: ml_collections.ConfigDict, **kwargs) -> dict[str, Any]:
  """sizes.json's dict for `rows` of the restored run (`size_report.build`)."""
  return size_report.build(
      restored.config, rows, size_fields=restored.size_fields(),
      checkpointer=restored.checkpointer,
      raw_item_bytes=size_report.raw_item_bytes(restored.config, restored.variables),
      eval_split=restored.split, eval_images=restored.num_images, settings=settings,
      trained=restored.trained(), **kwargs)
