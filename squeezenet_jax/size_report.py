"""The size report of `--mode=export` and `--mode=compress`: sizes.json, sizes.md, sizes.png.

It sets each export's bytes on disk and accuracy beside the analytic sizes (params x
dtype size) and the float32 AlexNet of the same harness, the paper's baseline. It
also splits every kept training checkpoint into parameters, optimizer state and
metadata, and measures what orbax's own compression of the array chunks achieves,
which is little on float32 weights: their mantissas are close to random.
"""

import json
from pathlib import Path
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import tensorstore as ts

from squeezenet_jax import accounting
from squeezenet_jax import checkpoints
from squeezenet_jax import reporting
from squeezenet_jax import workdir as workdir_lib
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
  raw = {'model': _nbytes(variables), 'opt_state': _nbytes(
      jax.eval_shape(tx.init, variables['params'])), 'progress': _nbytes(progress)}
  if config.ema_decay > 0:  # the trained weights beside their average
    raw['live'] = raw['model']
  return raw


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


# ----------------------------------------------------------------------------
# sizes.md and sizes.png, drawn from the dict `build` returns.

SIZES_JSON, SIZES_MARKDOWN, SIZES_CHART = 'sizes.json', 'sizes.md', 'sizes.png'


def model_name(model: Mapping[str, Any]) -> str:
  if model['name'] == 'squeezenet':
    return f"SqueezeNet {model['version']}"
  return 'AlexNet' if model['name'] == 'alexnet' else model['name']


def _optional(row: dict[str, Any], key: str, spec: str) -> str:
  return format(row[key], spec) if row.get(key) is not None else ''


def sizes_markdown(report: dict[str, Any]) -> str:
  """A readable sizes.md: exports, the AlexNet baseline, then the training checkpoints."""
  alexnet = report['alexnet']
  formats = report['formats'] + ([report['stablehlo']] if report.get('stablehlo') else [])
  rows = [[row['format'], reporting.megabytes(row['bytes']), _optional(row, 'bits_per_param', '.2f'),
           f"{row['vs_float32']:.3f}",
           f"{row['alexnet_ratio']:,.0f}x" if row['alexnet_ratio'] else '-',
           f"{row['accuracy']:.4f}", f"{row['accuracy_delta']:+.4f}",
           _optional(row, 'sparsity', '.1%'), _optional(row, 'finetune_epochs', 'd')]
          for row in formats]
  if alexnet:
    rows.append([f"AlexNet float32 (analytic, {alexnet['params']:,} params)",
                 reporting.megabytes(alexnet['float32_bytes']), '32.00', '', '1x', '', '', '', ''])
  export = report['export']
  training = report['checkpoints']['steps'][str(report['checkpoints']['latest_step'])]
  lines = [
      f"# Size of {model_name(report['model'])}: {report['params']:,} parameters", '',
      f"Accuracy on `{report['eval_split']}` ({report['eval_images']:,} images), each "
      'export reloaded from disk. Analytic float32 size (params x 4): '
      f"{reporting.megabytes(report['analytic_bytes'])}. MB = 10^6 bytes.", '',
      *reporting.markdown_table(['Format', 'Bytes on disk', 'Bits/param', 'vs float32',
                       'AlexNet fp32 / this', 'Accuracy', 'Δ vs float32', 'Sparsity',
                       'Fine-tune epochs'], rows, [False] + [True] * 8),
      '', '`float32` is the inference checkpoint: parameters and BN statistics, '
      'without the optimizer state of the training checkpoint, which weighs '
      f"{reporting.megabytes(training['total_bytes'])}. `compressed`: "
      f"{export['prune_fraction']:.0%} of each kernel pruned, {export['bits']}-bit "
      'per-kernel codebooks, a byte per index, lzma. Bits/param: file bits per '
      f"parameter ({report['params']:,}).", *_deploy_markdown(formats),
      *(f"\n`{row['format']}` could not be exported: {row['error']}"
        for row in report.get('failed_formats', [])), '',
      *_compress_markdown(report),
      *_checkpoint_markdown(report['checkpoints'])]
  return '\n'.join(lines) + '\n'


def _deploy_markdown(formats: list[dict[str, Any]]) -> list[str]:
  """What the deployable formats are, where the report has them."""
  by_name = {row['format']: row for row in formats}
  if 'onnx' not in by_name:
    return []
  lines = ['', '`onnx`, `onnx_int8`, `stablehlo`: the inference function (BatchNorm folded '
           'into the convs; uint8 NHWC pixels in, normalisation inside, logits out), scored '
           'by ONNX Runtime (CPU) and by `jax.export` with the weights inside.']
  int8 = by_name.get('onnx_int8')
  if int8 and 'calibration_split' in int8:
    lines[-1] += (" `onnx_int8`: ONNX Runtime's static quantizer (QDQ, int8 weights per "
                  f"output channel, int8 activations) calibrated on {int8['calibration_images']:,} "
                  f"images of `{int8['calibration_split']}`.")
  return lines


_METHODS = {'prune': 'gradual magnitude pruning to {sparsity:.0%} (Zhu & Gupta), {bits}-bit '
                     'codes',
            'share': 'trained k-means weight sharing, {bits}-bit codebooks per kernel',
            'qat': 'quantization-aware training (qwix), int{bits} weights per output channel'}


def _compress_markdown(report: dict[str, Any]) -> list[str]:
  """What each `--mode=compress` format is, and the reference model at equal accuracy."""
  compress = report.get('compress')
  if not compress:
    return []
  names = [r['format'] for r in report['formats'] if r.get('method')]
  lines = ['## Fine-tuned compression (`--mode=compress`)', '']
  for name in names:
    stage = compress.get(name, {})
    if not stage:
      continue
    start = f"from `{stage['start']}`" if stage['start'] else 'from the checkpoint'
    lines.append(f"- `{name}`: {_METHODS[stage['method']].format(**stage)}, {start}, "
                 f"{stage['epochs']} epoch{'' if stage['epochs'] == 1 else 's'} "
                 f"({stage['optimizer']}, peak learning rate "
                 f"{stage['learning_rate']:g}).")
  lines += ['', f"Codes {compress['coding']}-coded, vectors {compress['vector_dtype']}; "
            'fine-tune epochs count the stages a format starts from.', '']
  reference = report.get('reference')
  if reference:
    lines += _reference_markdown(report, reference)
  return lines


def _reference_markdown(report: dict[str, Any], reference: dict[str, Any]) -> list[str]:
  rows = [[row['format'], reporting.megabytes(row['bytes']), _optional(row, 'bits_per_param', '.2f'),
           f"{row['accuracy']:.4f}", f"{row['accuracy_delta']:+.4f}"]
          for row in reference['formats']]
  name = model_name(reference['model'])
  lines = [f"### {name} ({reference['params']:,} parameters, `{reference['workdir']}`)", '',
           *reporting.markdown_table(['Format', 'Bytes on disk', 'Bits/param', 'Accuracy',
                            'Δ vs float32'], rows, [False] + [True] * 4), '']
  equal = reference.get('equal_accuracy')
  if equal:
    lines += [f"At equal accuracy (at least {equal['accuracy']:.4f}, the weaker float32 "
              f"less one point), {model_name(report['model'])} needs "
              f"{reporting.megabytes(equal['bytes'])} (`{equal['format']}`) and {name} "
              f"{reporting.megabytes(equal['reference_bytes'])} (`{equal['reference_format']}`): "
              f"{equal['ratio']:,.1f}x.", '']
  return lines


def _checkpoint_markdown(sizes: dict[str, Any]) -> list[str]:
  # An EMA run's steps also hold the trained weights the model averages (`live`).
  live = any(s.get('live_bytes') for s in sizes['steps'].values())
  rows = [[step, f"{s['model_bytes']:,}", *([f"{s['live_bytes']:,}"] if live else []),
           f"{s['opt_state_bytes']:,}", f"{s['progress_bytes']:,}",
           f"{s['metadata_bytes']:,}", f"{s['total_bytes']:,}"]
          for step, s in sizes['steps'].items()]
  raw = ', '.join(f'{item} {n:,}' for item, n in sizes['raw_bytes'].items())
  ratios = ', '.join(f'{item} {r:.3f}x' for item, r in sizes['compression'].items())
  header = ['Step', 'Model (params + BN stats)', *(['Live weights (EMA)'] if live else []),
            'Optimizer state', 'Progress', 'Metadata', 'Total']
  return ['## Training checkpoints (orbax)', '',
          *reporting.markdown_table(header, rows, [True] * len(header)),
          '', f'In memory: {raw} bytes. Orbax compression of step {sizes["latest_step"]} '
          f'(in memory / on disk, above 1 when the files are smaller): {ratios}; '
          f'{_codec_text(sizes["codec"])}.']


def _codec_text(codec: dict[str, Any] | None) -> str:
  if not codec:
    return 'codec unknown'

  def name(c):
    return ' level '.join(str(c[k]) for k in ('id', 'level') if k in c) if c else 'none'

  return f"arrays {name(codec['arrays'])}, OCDBT index {name(codec['index'])}"


def _frontier_series(name: str, rows: list[dict[str, Any]], prefix: str = '') -> list[reporting.Series]:
  """A model's formats as labelled points, and its accuracy-against-bytes frontier."""
  points = [reporting.Point(row['bytes'], row['accuracy'],
                  f"{prefix}{row['format']} ({row['bytes'] / 1e6:.3g} MB)") for row in rows]
  best, frontier = -1.0, []
  for p in sorted(points, key=lambda p: (p.x, -p.y)):
    if p.y > best:
      frontier.append(reporting.Point(p.x, p.y, ''))
      best = p.y
  return [reporting.Series(name, points), reporting.Series(f'{name} frontier', frontier, connect=True)]


def sizes_chart(report: dict[str, Any], path: str | Path) -> None:
  """Accuracy against bytes on disk (log x), with 1 MB and AlexNet's float32 size.

  With `--mode=compress`'s formats, each model's frontier is drawn (the formats no
  smaller one beats), and a reference run's formats (AlexNet) on the same axes.
  """
  name = model_name(report['model'])
  reference = report.get('reference')
  if report.get('compress') or reference:
    series = _frontier_series(name, report['formats'])
    if reference:
      series += _frontier_series(model_name(reference['model']), reference['formats'],
                                 prefix=f"{model_name(reference['model'])} ")
  else:
    series = [reporting.Series(None, [reporting.Point(row['bytes'], row['accuracy'],
                                  f"{row['format']} ({row['bytes'] / 1e6:.3g} MB)")
                            for row in report['formats']])]
  references = [reporting.Reference('1 MB', x=1e6, style=':')]
  if report['alexnet']:
    references.append(reporting.Reference(
        f"AlexNet float32 ({report['alexnet']['float32_bytes'] / 1e6:.0f} MB)",
        x=report['alexnet']['float32_bytes']))
  trained = report.get('trained', {})
  if reference:
    name = f"{name} and {model_name(reference['model'])}"
  reporting.scatter_chart(
      path, series,
      title=f'{name}: accuracy against size on disk',
      subtitle=reporting.run_subtitle(report.get('config', {'data': {'source': 'synthetic'}}),
                            trained.get('epochs'), trained.get('images_seen'),
                            f"scored on {report['eval_split']} "
                            f"({report['eval_images']:,} images)"),
      xlabel='bytes on disk (log scale; MB = 10^6 bytes)', x_unit='B',
      ylabel=f"accuracy on {report['eval_split']} (fraction)", references=references)


def write_sizes(workdir: str | Path, report: dict[str, Any]) -> None:
  workdir_lib.write_json(Path(workdir) / SIZES_JSON, report)
  (Path(workdir) / SIZES_MARKDOWN).write_text(sizes_markdown(report))
  sizes_chart(report, Path(workdir) / SIZES_CHART)
