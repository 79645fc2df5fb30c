"""`--mode=compress`: fine-tuned compression of a trained run, one stage per format.

Each stage named in `compress.stages` starts from the run's latest checkpoint or from
an earlier stage's result (`compress.<stage>.start`), fine-tunes with the trainer's
own compiled step and loop (`trainer.Trainer` built from a `trainer.FineTune`,
`loop.resume_and_train`), and writes `W/exports/<stage>/model.sqz`:

  prune   gradual magnitude pruning (Zhu & Gupta), masks applied inside the step;
          the file holds int8 (or int4) codes, pruned weights at code 0.
  share   Deep Compression's trained weight sharing: k-means codebooks whose
          centroids are fine-tuned, assignments fixed; zeros of an earlier stage
          stay pruned.
  qat     quantization-aware training (qwix) to int8 or int4 weights.

Codes are entropy coded (ANS) in `compression.container`'s file, read back from disk,
dequantised and scored as `--mode=export` scores its formats; the rows join
sizes.json/sizes.md/sizes.png beside the float32 export of the same run (computed
first when sizes.json lacks it), with `bits_per_param`, `sparsity`, `finetune_epochs`
(this stage's and its starts') and `accuracy_delta`.

A stage keeps its checkpoints (orbax), metrics.jsonl and settings under
`W/compress/<stage>/`: a rerun resumes it, SIGTERM saves and exits 143, and every
random draw derives from (seed, stage, step), so a killed and rerun compress ends
identical to an uninterrupted one. A finished stage is restored, not retrained, and
its export reused while its settings are unchanged; a stage whose settings changed
is refused rather than overwritten.
"""

import contextlib
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from flax import nnx

from squeezenet_jax import checkpoints
from squeezenet_jax import exports
from squeezenet_jax import formats
from squeezenet_jax import rng
from squeezenet_jax import size_report
from squeezenet_jax import validation
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.compression import plan
from squeezenet_jax.errors import UserError
from squeezenet_jax.modes import export
from squeezenet_jax.training import loop
from squeezenet_jax.training import trainer as trainer_lib

COMPRESS_DIR = 'compress'
STAGE_FILE = 'stage.json'  # a stage's settings, for the check on rerun
EXPORT_FILE = 'export.json'  # a finished stage's sizes.json row
# The run's recipe fields a stage sets: run field -> stage field.
_RECIPE = {'num_epochs': 'epochs', 'optimizer': 'optimizer', 'learning_rate': 'learning_rate',
           'warmup_epochs': 'warmup_epochs'}

Tree = dict[str, Any]


def stage_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The run's config with the stage's recipe: epochs, optimizer, learning rate, warmup."""
  tuned = ml_collections.ConfigDict(config.to_dict())
  for field, stage_field in _RECIPE.items():
    tuned[field] = config.compress[name][stage_field]
  tuned.lr_schedule = 'cosine'
  return tuned


def plan_settings(stage: ml_collections.ConfigDict, steps_per_epoch: int) -> plan.Settings:
  """The library's settings of a stage; pruning ramps over `ramp` of the stage's steps."""
  if stage.method == 'prune':
    return plan.Settings('prune', bits=stage.bits, sparsity=stage.sparsity, scope=stage.scope,
                         initial_sparsity=stage.initial_sparsity, begin_step=0,
                         end_step=round(stage.ramp * stage.epochs * steps_per_epoch),
                         frequency=stage.frequency)
  if stage.method == 'share':
    return plan.Settings('share', bits=stage.bits, sparsity=stage.sparsity)
  return plan.Settings('qat', bits=stage.bits)


def stage_key(seed: int, name: str) -> jax.Array:
  """The root key of a stage's streams: (seed, stage name), whatever the stage order."""
  return jax.random.fold_in(rng.root_key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


class Start(NamedTuple):
  """What a stage starts from: the run's checkpoint or an earlier stage's result."""
  params: Tree  # float, an nnx pure dict
  batch_stats: nnx.State
  epochs: int  # fine-tuning epochs behind it
  record: dict[str, Any]  # what decided it (`_stage_record`)


def _stage_record(config: ml_collections.ConfigDict, name: str, start: Start) -> dict:
  """Everything that decides a stage's result: its settings, its start's, the data."""
  fields = ('source', 'path', 'limit', 'val_size', 'split_seed', 'dataset')
  return {'stage': config.compress[name].to_dict(), 'start': start.record,
          'seed': config.seed, 'data': {k: config.data.get(k) for k in fields}}


def _check_record(directory: Path, record: dict[str, Any]) -> None:
  """Writes the stage's record, or refuses a stage dir holding another's progress."""
  path = directory / STAGE_FILE
  if path.exists():
    saved = workdir_lib.read_json(path)
    if saved != record:
      diff = workdir_lib.config_diff(saved, record)
      raise UserError(
          f'{directory} holds a compress stage of other settings (differs in '
          f'{", ".join(diff[:5]) or "its start"}); move it away (or restore the settings) '
          'to compress with these')
    return
  directory.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_json(path, record)


def _fine_tune(graphdef: nnx.GraphDef, start: Start, settings: plan.Settings,
               key: jax.Array, image_shape: tuple[int, ...]) -> trainer_lib.FineTune:
  """The stage's starting point: prepared trainable tree and stage, and its graph."""
  trainable, stage = plan.prepare(start.params, settings)
  model = nnx.merge(graphdef, start.params, start.batch_stats)
  # qwix traces the model on a sample batch to find the layers it quantizes.
  sample = jnp.zeros((1,) + image_shape, jnp.float32)
  train_graphdef = nnx.split(plan.transform_model(model, sample, settings),
                             nnx.Param, nnx.BatchStat)[0]
  return trainer_lib.FineTune(graphdef=train_graphdef, variables={
      'params': trainable, 'batch_stats': start.batch_stats}, stage=stage, rng=key)


def _export_row(restored: trainer_lib.RestoredRun, name: str, stage: ml_collections.ConfigDict,
                directory: Path, stored: Tree, epochs: int) -> dict[str, Any]:
  """The sizes.json row of a stage's file, scored on its weights as read from disk."""
  sparsity = plan.sparsity(stored['params'])
  return formats.row(
      name, directory, export.score(restored, formats.dequantized(stored)),
      note=f'sparsity {sparsity:.3f}  (fine-tuned {epochs} epoch{"" if epochs == 1 else "s"})',
      method=stage.method, bits=stage.bits, sparsity=sparsity, finetune_epochs=epochs)


def run_stage(name: str, config: ml_collections.ConfigDict, restored: trainer_lib.RestoredRun,
              dataset, start: Start, transaction: exports.Transaction,
              fallback: bool = False) -> tuple[dict[str, Any], Start]:
  """Fine-tunes (or resumes, or restores) one stage and exports it (uncommitted) where
  its committed export is not of its last step; (row, its result)."""
  stage = config.compress[name]
  workdir = Path(restored.workdir)
  directory = workdir / COMPRESS_DIR / name
  record = _stage_record(config, name, start)
  _check_record(directory, record)
  tuned = stage_config(config, name)
  steps_per_epoch = len(dataset.splits['train'].labels) // tuned.batch_size
  settings = plan_settings(stage, steps_per_epoch)
  logging.info('compress stage %s: %s from %s, %d epochs', name, settings,
               stage.start or 'the checkpoint', stage.epochs)
  image_shape = dataset.splits['train'].images.shape[1:]
  trainer = trainer_lib.Trainer(tuned, dataset, restored.scorer.mesh, fine_tune=_fine_tune(
      restored.graphdef, start, settings, stage_key(config.seed, name), image_shape))
  with contextlib.closing(checkpoints.Checkpointer(
      directory / workdir_lib.CHECKPOINT_DIR, max_to_keep=config.max_to_keep)) as checkpointer:
    loop.resume_and_train(trainer, checkpointer, str(directory), fallback=fallback)
    step = checkpointer.latest_step()
  epochs = start.epochs + stage.epochs
  saved_row = directory / EXPORT_FILE
  row = workdir_lib.read_json(saved_row) if saved_row.exists() else None
  if not (row and row.get('step') == step
          and (exports.exports_dir(workdir) / name / formats.FILE).exists()):
    export_dir = transaction.directory(name)
    encoded = trainer.state.stage.encode(trainer.state.params)
    stored = formats.write_codes(export_dir, encoded,
                                 jax.device_get(nnx.to_pure_dict(trainer.state.batch_stats)),
                                 config.compress)
    row = {**_export_row(restored, name, stage, export_dir, stored, epochs), 'step': step}
    workdir_lib.write_json(saved_row, row)
  params = jax.device_get(trainer.model_vars['params'])
  return row, Start(params, trainer.state.batch_stats, epochs, record)


def _float_rows(workdir: str, restored: trainer_lib.RestoredRun, settings,
                transaction: exports.Transaction) -> tuple[
    list[dict[str, Any]], dict[str, Any] | None]:
  """(rows, previous report): sizes.json's rows, or `--mode=export`'s, made now if absent."""
  previous = size_report.previous_report(workdir, restored.split, restored.num_images,
                                         restored.step)
  if previous and any(r['format'] == 'float32' for r in previous['formats']):
    return previous['formats'], previous
  logging.info('sizes.json has no float32 row of step %d on %s: exporting first',
               restored.step, restored.split)
  model = formats.to_numpy(restored.variables)
  rows = export.export_rows(restored, model, settings, transaction)
  return size_report.kept_rows(previous, rows), previous


def run(workdir: str, config: ml_collections.ConfigDict,
        fallback: bool = False) -> dict[str, Any]:
  """Runs every stage of `compress.stages`; returns the size report (sizes.json).

  `config`: the run's, with this command's overrides (`trained_run.config_for`).
  """
  names = validation.compress_stages(config)
  export_settings = config.export
  dataset = trainer_lib.load_data(config, ('train', 'validation'),
                            workdir_lib.read_classes(workdir))
  with workdir_lib.locked(workdir, 'compress'):
    restored = trainer_lib.RestoredRun(workdir, config, fallback=fallback)
    reference = (size_report.reference_report(config.compress.reference_workdir,
                                              restored.split, restored.num_images)
                 if config.compress.reference_workdir else None)
    transaction = exports.Transaction(workdir)
    rows, previous = _float_rows(workdir, restored, export_settings, transaction)
    carried = size_report.carried(previous)
    start = Start(formats.to_numpy(restored.variables)['params'],
                  restored.variables['batch_stats'], 0,
                  {'checkpoint_step': restored.step})
    results = {'': start}
    report = None
    try:
      for name in names:
        row, results[name] = run_stage(name, config, restored, dataset,
                                       results[config.compress[name].start], transaction,
                                       fallback)
        rows = [r for r in rows if r['format'] != name] + [row]
        report = export.commit(transaction, workdir, export.build_report(
            restored, rows, export_settings, compress=config.compress.to_dict(),
            stablehlo=carried.get('stablehlo'),
            reference=reference or carried.get('reference')))
        transaction = exports.Transaction(workdir)
    finally:
      transaction.abort()
  return report
