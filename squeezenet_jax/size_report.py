"""The size report of `--mode=export`: what sizes.json holds (rendered by `reporting`).

It sets each export's bytes on disk and accuracy beside the analytic sizes (params x
dtype size) and the float32 AlexNet of the same harness, the paper's baseline. It
also splits every kept training checkpoint into parameters, optimizer state and
metadata, and measures what orbax's own compression of the array chunks achieves,
which is little on float32 weights: their mantissas are close to random.
"""

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import tensorstore as ts

from squeezenet_jax import accounting
from squeezenet_jax import checkpoints
from squeezenet_jax.errors import UserError
from squeezenet_jax.training import optim


def _nbytes(tree: Any) -> int:
  return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(tree))


def raw_item_bytes(config: ml_collections.ConfigDict, variables: dict[str, Any]) -> dict[str, int]:
  """In-memory bytes (entries x dtype size) of each training checkpoint item.

  The optimizer state is sized from its shapes (`jax.eval_shape`), never built.
  """
  tx = optim.make_optimizer(config, steps_per_epoch=1).tx
  progress = {'step': jax.ShapeDtypeStruct((), np.int32),
              'rng': jax.ShapeDtypeStruct((2,), np.uint32)}
  return {'model': _nbytes(variables), 'opt_state': _nbytes(
      jax.eval_shape(tx.init, variables['params'])), 'progress': _nbytes(progress)}


def orbax_codec(item_dir: str | Path) -> dict[str, Any] | None:
  """The compressors orbax wrote an item with (arrays, OCDBT index), read from disk."""
  kvstore = {'driver': 'ocdbt', 'base': f'file://{Path(item_dir).absolute()}/'}
  try:
    keys = ts.KvStore.open(kvstore).result().list().result()
    array = next(k.decode()[:-len('/.zarray')] for k in keys if k.endswith(b'/.zarray'))
    spec = ts.open({'driver': 'zarr', 'kvstore': kvstore, 'path': array}).result().spec()
  except (ValueError, StopIteration):  # not OCDBT + zarr v2: nothing to say
    return None
  spec = spec.to_json()
  return {'arrays': spec['metadata']['compressor'],
          'index': spec['kvstore'].get('config', {}).get('compression')}


def checkpoint_sizes(checkpointer: checkpoints.Checkpointer,
                     raw_item_bytes: dict[str, int]) -> dict[str, Any]:
  """Per-step bytes on disk by item, and orbax's compression on the latest step."""
  steps = {str(step): checkpoints.step_accounting(checkpointer.step_dir(step))
           for step in checkpointer.all_steps()}
  latest = checkpointer.latest_step()
  on_disk = steps[str(latest)]
  return {
      'latest_step': latest,
      'steps': steps,
      'raw_bytes': raw_item_bytes,
      # > 1: orbax's files are smaller than the arrays in memory.
      'compression': {item: raw / on_disk[f'{item}_bytes']
                      for item, raw in raw_item_bytes.items() if on_disk[f'{item}_bytes']},
      'codec': orbax_codec(checkpointer.step_dir(latest) / 'model'),
  }


def alexnet_reference(config: ml_collections.ConfigDict) -> dict[str, int] | None:
  """Parameters and float32 bytes of AlexNet built like this run (same stem, data)."""
  alexnet = ml_collections.ConfigDict(config.to_dict())
  alexnet.model.name = 'alexnet'
  try:
    summary = accounting.summarize(alexnet)
  except UserError:  # e.g. an image size AlexNet's pools cannot take
    return None
  return {'params': summary['total_params'], 'float32_bytes': summary['bytes']['float32']}


def _format_rows(rows: list[dict[str, Any]], alexnet: dict[str, int] | None,
                 params: int) -> list[dict]:
  reference = next(r for r in rows if r['format'] == 'float32')
  return [{**row,
           'accuracy_delta': row['accuracy'] - reference['accuracy'],
           'bits_per_param': 8 * row['bytes'] / params,
           'vs_float32': row['bytes'] / reference['bytes'],
           'alexnet_ratio': alexnet['float32_bytes'] / row['bytes'] if alexnet else None}
          for row in rows]


def previous_report(workdir: str | Path, eval_split: str, eval_images: int,
                    step: int) -> dict[str, Any] | None:
  """The workdir's sizes.json if it reports this checkpoint on this evaluation set.

  `--mode=export` and `--mode=compress` each replace only their own formats in it
  (`kept_rows`, `carried`); a report of another checkpoint or split is replaced whole.
  """
  path = Path(workdir) / 'sizes.json'
  try:
    previous = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  same = (previous.get('eval_split'), previous.get('eval_images'),
          previous.get('trained', {}).get('steps')) == (eval_split, eval_images, step)
  return previous if same else None


def kept_rows(previous: dict[str, Any] | None,
              rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """`rows`, then the rows of `previous` (`previous_report`) of other formats."""
  names = {row['format'] for row in rows}
  return rows + [row for row in (previous or {}).get('formats', [])
                 if row['format'] not in names]


def carried(previous: dict[str, Any] | None) -> dict[str, Any]:
  """`build`'s stablehlo/compress/reference arguments as `previous` had them."""
  return {key: previous[key] for key in ('stablehlo', 'compress', 'reference')
          if previous and previous.get(key) is not None}


def _smallest_at(rows: list[dict[str, Any]], accuracy: float) -> dict[str, Any] | None:
  at = [r for r in rows if r['accuracy'] >= accuracy - 1e-9]
  return min(at, key=lambda r: r['bytes']) if at else None


def equal_accuracy(rows: list[dict[str, Any]],
                   reference_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
  """Bytes each model needs for the same accuracy, and their ratio.

  The level is the weaker model's float32 accuracy less one point: the smallest
  format of each model that reaches it (both have one: their float32 does).
  """
  floats = [next((r for r in x if r['format'] == 'float32'), None)
            for x in (rows, reference_rows)]
  if None in floats:
    return None
  level = min(r['accuracy'] for r in floats) - 0.01
  ours, theirs = _smallest_at(rows, level), _smallest_at(reference_rows, level)
  return {'accuracy': level, 'format': ours['format'], 'bytes': ours['bytes'],
          'reference_format': theirs['format'], 'reference_bytes': theirs['bytes'],
          'ratio': theirs['bytes'] / ours['bytes']}


def reference_report(workdir: str, eval_split: str, eval_images: int) -> dict[str, Any]:
  """Another run's sizes.json (e.g. AlexNet, compressed too) for the same chart and table."""
  path = Path(workdir) / 'sizes.json'
  if not path.exists():
    raise UserError(f'compress.reference_workdir={workdir}: {path} not found; run '
                    f'--mode=export (and --mode=compress) on that run first')
  report = json.loads(path.read_text())
  if (report.get('eval_split'), report.get('eval_images')) != (eval_split, eval_images):
    raise UserError(f'compress.reference_workdir={workdir} was scored on '
                    f"{report.get('eval_split')} ({report.get('eval_images')} images), this "
                    f'run on {eval_split} ({eval_images}): compare on the same data')
  return {'workdir': str(workdir), 'model': report['model'], 'params': report['params'],
          'trained': report.get('trained', {}), 'formats': report['formats']}


def build(config: ml_collections.ConfigDict, rows: list[dict[str, Any]], *,
          size_fields: dict[str, int], checkpointer: checkpoints.Checkpointer,
          raw_item_bytes: dict[str, int], eval_split: str, eval_images: int,
          settings: ml_collections.ConfigDict, trained: dict[str, Any],
          stablehlo: dict[str, Any] | None = None,
          compress: dict[str, Any] | None = None,
          reference: dict[str, Any] | None = None,
          failed_formats: list[dict[str, str]] | None = None) -> dict[str, Any]:
  """The sizes.json dict from the exports' rows (format, bytes, accuracy, ...).

  `trained`: `epochs` and `images_seen` of the exported checkpoint, for the chart.
  `stablehlo`: the jax.export artifact's row, kept beside `formats` (the same
  function and weights as `onnx`, for JAX serving). `compress`: the settings of
  `--mode=compress`'s formats; `reference`: another run's report
  (`reference_report`) to compare with at equal accuracy. `failed_formats`: the
  formats that could not be exported, each with its error.
  """
  alexnet = alexnet_reference(config)
  params = size_fields['params']
  formats = _format_rows(rows, alexnet, params)
  report = {
      'config': json.loads(config.to_json()),  # as sizes.json holds it
      'trained': trained,
      'model': json.loads(config.model.to_json()),
      'params': size_fields['params'],
      'analytic_bytes': size_fields['analytic_bytes'],
      'eval_split': eval_split,
      'eval_images': eval_images,
      'export': settings.to_dict(),
      'alexnet': alexnet,
      'formats': formats,
      'checkpoints': checkpoint_sizes(checkpointer, raw_item_bytes),
  }
  if stablehlo:
    report['stablehlo'] = _format_rows([*rows, stablehlo], alexnet, params)[-1]
  if failed_formats:
    report['failed_formats'] = failed_formats
  if compress is not None:
    report['compress'] = compress
  if reference is not None:
    report['reference'] = {**reference,
                           'equal_accuracy': equal_accuracy(formats, reference['formats'])}
  return report
