"""`--mode=export`: inference exports of a run's latest checkpoint, each re-scored from disk.

Formats, under `workdir/exports/<format>/` (`formats`): float32, bfloat16, int8 and
compressed, then the deployable onnx, onnx_int8 and stablehlo (`export_deploy`).
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

from pathlib import Path
from typing import Any

import jax
import ml_collections
from flax import nnx

from squeezenet_jax import errors
from squeezenet_jax import exports
from squeezenet_jax import formats
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax import size_report
from squeezenet_jax.errors import UserError
from squeezenet_jax.errors import WriteError
from squeezenet_jax.modes import export_deploy
from squeezenet_jax.training import trainer as trainer_lib

Tree = dict[str, Any]


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


def score(restored: trainer_lib.RestoredRun, model: Tree) -> dict[str, float]:
  """Scores decoded weights as `--mode=eval` scores the checkpoint."""
  placement = sharding.replicated(restored.scorer.mesh)
  return restored.score({part: _filled(restored.variables[part], model[part], placement)
                         for part in formats.PARTS})


def export_format(restored: trainer_lib.RestoredRun, fmt: str, model: Tree,
                  transaction: exports.Transaction,
                  settings: ml_collections.ConfigDict) -> dict[str, Any]:
  """Saves one format (uncommitted), reloads it from disk and scores it."""
  directory = transaction.directory(fmt)
  formats.write(fmt, model, directory, settings)
  return formats.row(fmt, directory, score(restored, formats.read(directory)))


def run(workdir: str, config: ml_collections.ConfigDict,
        fallback: bool = False) -> dict[str, Any]:
  """Exports every format, then writes and returns the size report (sizes.json).

  `config`: the run's, with this command's overrides (`trained_run.config_for`).
  """
  settings = config.export
  with workdir_lib.locked(workdir, 'export'):
    restored = trainer_lib.RestoredRun(workdir, config, fallback=fallback)
    model = formats.to_numpy(restored.variables)
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
        size_report.write_sizes(workdir, {
            **build_report(restored, earlier, settings, **kept, failed_formats=[
                {'format': fmt, 'error': failure} for fmt in export_deploy.FORMATS]),
            exports.ID_KEY: exports.committed_id(workdir)})
        raise UserError(f'the ONNX and StableHLO exports failed ({failure}); the other '
                        f'formats are in {Path(workdir) / size_report.SIZES_JSON}') from e
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
    size_report.write_sizes(workdir, stamped)

  reported = [row['format'] for row in report['formats']]
  transaction.commit(write, reported + (['stablehlo'] if report.get('stablehlo') else []))
  return stamped


def export_rows(restored: trainer_lib.RestoredRun, model: Tree,
                settings: ml_collections.ConfigDict,
                transaction: exports.Transaction) -> list[dict[str, Any]]:
  """The weight formats (`formats.WEIGHTS`), exported (uncommitted), reloaded and scored."""
  return [export_format(restored, fmt, model, transaction, settings) for fmt in formats.WEIGHTS]


def build_report(restored: trainer_lib.RestoredRun, rows: list[dict[str, Any]],
                 settings: ml_collections.ConfigDict, **kwargs) -> dict[str, Any]:
  """sizes.json's dict for `rows` of the restored run (`size_report.build`)."""
  return size_report.build(
      restored.config, rows, size_fields=restored.size_fields(),
      checkpointer=restored.checkpointer,
      raw_item_bytes=size_report.raw_item_bytes(restored.config, restored.variables),
      eval_split=restored.split, eval_images=restored.num_images, settings=settings,
      trained=restored.trained(), **kwargs)
