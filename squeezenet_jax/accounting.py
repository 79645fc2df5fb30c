"""Per-layer parameter, MAC and byte accounting from a shape-only trace of the model.

Layers are the ones `models` records while tracing a zeros batch of the config's image
size, so the table follows what actually runs. The formula total is checked against
the parameters the built model holds; a mismatch is a bug in one of the two.
"""

import math
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections

from squeezenet_jax import models

# Bytes per parameter of each storage format.
BYTES_PER_PARAM = {'float32': 4, 'bfloat16': 2, 'int8': 1}


def _size(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def count_params(model: nnx.Module) -> int:
  """Entries of the model's nnx.Param leaves (works on abstract eval_shape models)."""
  return _size(nnx.state(model, nnx.Param))


def count_batch_stats(model: nnx.Module) -> int:
  """Entries of the BN running statistics (not parameters: never trained)."""
  return _size(nnx.state(model, nnx.BatchStat))


def layer_row(record: models.LayerRecord) -> dict[str, Any]:
  """Params and MACs of one layer from the formulas.

  conv: P = (K*K*C + 1)*F, the +1 a bias per filter (none where BatchNorm follows);
  MACs K*K*C*F*Ho*Wo. dense: P = (C + 1)*F, MACs C*F. BatchNorm, a row of its own:
  P = 2*C (scale, offset), plus 2*C running statistics and no MACs (it folds into
  the conv before it at inference).
  """
  k, c, f = record.kernel, record.in_channels, record.filters
  bias = 1 if record.bias else 0
  batch_stats = 0
  if record.kind == 'conv':
    params, macs = (k * k * c + bias) * f, k * k * c * f * math.prod(record.out_size)
  elif record.kind == 'dense':
    params, macs = (c + bias) * f, c * f
  else:
    params, macs, batch_stats = 2 * c, 0, 2 * c
  return {
      'name': record.name,
      'type': record.kind,
      'kernel': record.kernel,
      'stride': record.stride,
      'in_channels': c,
      'filters': f,
      'out_size': list(record.out_size) if record.out_size else None,
      'params': params,
      'batch_stats': batch_stats,
      'macs': macs,
  }


def trace_layers(model: nnx.Module, image_size: int) -> list[models.LayerRecord]:
  """Layers executed on one image_size x image_size RGB image, from a shape-only trace."""
  image = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  with models.recording() as records:
    nnx.eval_shape(lambda m, x: m(x), model, image)
  return records


def summarize(config: ml_collections.ConfigDict,
              model: nnx.Module | None = None) -> dict[str, Any]:
  """The summary.json dict: per-layer rows, totals, MACs per image and bytes per format.

  `model`: the run's own model where one is built already (else a shape-only one).
  """
  image_size = config.data.image_size
  model = models.abstract_model(config) if model is None else model
  layers = [layer_row(r) for r in trace_layers(model, image_size)]
  total = count_params(model)
  analytic = sum(row['params'] for row in layers)
  if analytic != total:
    raise RuntimeError(f'accounting bug: formula gives {analytic:,} params, the '
                       f'model holds {total:,}')
  batch_stats = count_batch_stats(model)
  if batch_stats != sum(row['batch_stats'] for row in layers):
    raise RuntimeError('accounting bug: BN running statistics do not match the layers')
  return {
      'model': config.model.to_dict(),
      'image_size': image_size,
      'layers': layers,
      'total_params': total,
      'analytic_params': analytic,
      'batch_norm_params': sum(r['params'] for r in layers if r['type'] == 'bn'),
      'batch_stats': batch_stats,
      'macs': sum(row['macs'] for row in layers),
      'bytes': {fmt: total * n for fmt, n in BYTES_PER_PARAM.items()},
  }


def size_fields(config: ml_collections.ConfigDict, model: nnx.Module) -> dict[str, int]:
  """results.json's size fields of a run's model: counted and analytic parameters,
  MACs per image, analytic float32 bytes."""
  summary = summarize(config, model=model)
  return {'params': summary['total_params'], 'analytic_params': summary['analytic_params'],
          'macs': summary['macs'],
          'analytic_bytes': summary['analytic_params'] * BYTES_PER_PARAM['float32']}


def _cell(value: Any) -> str:
  if value is None:
    return '-'
  if isinstance(value, list):
    return 'x'.join(map(str, value))
  return f'{value:,}' if isinstance(value, int) else str(value)


_COLUMNS = (  # (header, row key, width)
    ('Layer', 'name', 26), ('Kernel', 'kernel', 6), ('Stride', 'stride', 6),
    ('In', 'in_channels', 6), ('Filters', 'filters', 7), ('Out', 'out_size', 9),
    ('Params', 'params', 12), ('MACs', 'macs', 15))


def format_table(summary: dict[str, Any]) -> str:
  """A fixed-width per-layer table with totals, like Keras summary()."""

  def line(cells):
    return '  '.join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, (_, _, w)) in enumerate(zip(cells, _COLUMNS)))

  header = line([h for h, _, _ in _COLUMNS])
  rule = '-' * len(header)
  rows = [line([_cell(row[key]) for _, key, _ in _COLUMNS])
          for row in summary['layers']]
  m = summary['model']
  arch = f"squeezenet {m['version']}" if m['name'] == 'squeezenet' else m['name']
  title = (f"{arch}: stem={m['stem']} bypass={m['bypass']} "
           f"batch_norm={m['batch_norm']} classes={m['num_classes']} @ "
           f"{summary['image_size']}x{summary['image_size']}")
  sizes = ' | '.join(f'{fmt} {n / 1e6:,.2f} MB'
                     for fmt, n in summary['bytes'].items())
  footer = [
      f"Total params: {summary['total_params']:,} (analytic "
      f"{summary['analytic_params']:,}; of which BN {summary['batch_norm_params']:,})",
      f"BN running statistics: {summary['batch_stats']:,}",
      f"MACs per image: {summary['macs']:,} ({summary['macs'] / 1e6:,.1f} M)",
      f'Parameter bytes: {sizes} (MB = 10^6 bytes)',
  ]
  return '\n'.join([title, rule, header, rule, *rows, rule, *footer])
