"""The size report of `--mode=export`: what sizes.json holds (rendered by `reporting`).

It sets each export's bytes on disk and accuracy beside the analytic sizes (params x
dtype size) and the float32 AlexNet of the same harness, the paper's baseline. It
also splits every kept training checkpoint into parameters, optimizer state and
metadata, and measures what orbax's own compression achieves. Orbax's default (orbax
0.12: OCDBT holding zarr v2 arrays) compresses each array chunk with zstd level 1,
which gains little on float32 weights: their mantissas are close to random.
"""

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


def _format_rows(rows: list[dict[str, Any]], alexnet: dict[str, int] | None) -> list[dict]:
  reference = next(r for r in rows if r['format'] == 'float32')
  return [{**row,
           'accuracy_delta': row['accuracy'] - reference['accuracy'],
           'vs_float32': row['bytes'] / reference['bytes'],
           'alexnet_ratio': alexnet['float32_bytes'] / row['bytes'] if alexnet else None}
          for row in rows]


def build(config: ml_collections.ConfigDict, rows: list[dict[str, Any]], *,
          size_fields: dict[str, int], checkpointer: checkpoints.Checkpointer,
          raw_item_bytes: dict[str, int], eval_split: str, eval_images: int,
          settings: ml_collections.ConfigDict, trained: dict[str, Any],
          stablehlo: dict[str, Any] | None = None) -> dict[str, Any]:
  """The sizes.json dict from the exports' rows (format, bytes, accuracy, ...).

  `trained`: `epochs` and `images_seen` of the exported checkpoint, for the chart.
  `stablehlo`: the jax.export artifact's row, kept beside `formats` (the same
  function and weights as `onnx`, for JAX serving).
  """
  alexnet = alexnet_reference(config)
  report = {
      'config': config.to_dict(),
      'trained': trained,
      'model': config.model.to_dict(),
      'params': size_fields['params'],
      'analytic_bytes': size_fields['analytic_bytes'],
      'eval_split': eval_split,
      'eval_images': eval_images,
      'export': settings.to_dict(),
      'alexnet': alexnet,
      'formats': _format_rows(rows, alexnet),
      'checkpoints': checkpoint_sizes(checkpointer, raw_item_bytes),
  }
  if stablehlo:
    report['stablehlo'] = _format_rows([*rows, stablehlo], alexnet)[-1]
  return report
