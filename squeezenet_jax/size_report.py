"""The size report of `--mode=export`: sizes.json, sizes.md and sizes.png in the workdir.

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
import matplotlib
import ml_collections
import tensorstore as ts

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from squeezenet_jax import accounting
from squeezenet_jax import checkpoints
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError

JSON_FILE = 'sizes.json'
MARKDOWN_FILE = 'sizes.md'
CHART_FILE = 'sizes.png'


def raw_bytes(items: dict[str, Any]) -> dict[str, int]:
  """In-memory bytes (entries x dtype size) of each checkpoint item."""
  return {name: sum(leaf.nbytes for leaf in jax.tree.leaves(tree))
          for name, tree in items.items()}


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
          settings: ml_collections.ConfigDict) -> dict[str, Any]:
  """The sizes.json dict from the exports' rows (format, bytes, accuracy, ...)."""
  alexnet = alexnet_reference(config)
  return {
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


def _bytes(n: int) -> str:
  return f'{n:,} ({n / 1e6:.3g} MB)'


def _model_name(model: dict[str, Any]) -> str:
  if model['name'] == 'squeezenet':
    return f"SqueezeNet {model['version']}"
  return model['name']


def markdown(report: dict[str, Any]) -> str:
  """A readable sizes.md: exports, the AlexNet baseline, then the training checkpoints."""
  alexnet = report['alexnet']
  lines = [
      f"# Size of {_model_name(report['model'])}: {report['params']:,} parameters",
      '',
      f"Accuracy on `{report['eval_split']}` ({report['eval_images']:,} images), each "
      'export reloaded from disk. Analytic float32 size (params x 4): '
      f"{_bytes(report['analytic_bytes'])}.",
      '',
      '| Format | Bytes on disk | vs float32 | AlexNet fp32 / this | Accuracy | Δ vs float32 |',
      '|---|---:|---:|---:|---:|---:|',
  ]
  for row in report['formats']:
    ratio = f"{row['alexnet_ratio']:,.0f}x" if row['alexnet_ratio'] else '-'
    lines.append(f"| {row['format']} | {_bytes(row['bytes'])} | {row['vs_float32']:.3f} | "
                 f"{ratio} | {row['accuracy']:.4f} | {row['accuracy_delta']:+.4f} |")
  if alexnet:
    lines.append(f"| AlexNet float32 (analytic, {alexnet['params']:,} params) | "
                 f"{_bytes(alexnet['float32_bytes'])} | | 1x | | |")
  export = report['export']
  training = report['checkpoints']['steps'][str(report['checkpoints']['latest_step'])]
  lines += ['', '`float32` is the inference checkpoint: parameters and BN statistics, '
            'without the optimizer state of the training checkpoint, which weighs '
            f"{_bytes(training['total_bytes'])}. `compressed`: "
            f"{export['prune_fraction']:.0%} of each kernel pruned, {export['bits']}-bit "
            'per-kernel codebooks, a byte per index, lzma.']
  lines += ['', *_checkpoint_markdown(report['checkpoints'])]
  return '\n'.join(lines) + '\n'


def _checkpoint_markdown(sizes: dict[str, Any]) -> list[str]:
  lines = ['## Training checkpoints (orbax)', '',
           '| Step | Model (params + BN stats) | Optimizer state | Progress | Metadata | Total |',
           '|---:|---:|---:|---:|---:|---:|']
  for step, s in sizes['steps'].items():
    lines.append(f"| {step} | {s['model_bytes']:,} | {s['opt_state_bytes']:,} | "
                 f"{s['progress_bytes']:,} | {s['metadata_bytes']:,} | {s['total_bytes']:,} |")
  raw = ', '.join(f'{item} {n:,}' for item, n in sizes['raw_bytes'].items())
  ratios = ', '.join(f'{item} {r:.3f}x' for item, r in sizes['compression'].items())
  lines += ['', f'In memory: {raw} bytes. Orbax compression of step {sizes["latest_step"]} '
            f'(in memory / on disk, above 1 when the files are smaller): {ratios}; '
            f'{_codec_text(sizes["codec"])}.']
  return lines


def _codec_text(codec: dict[str, Any] | None) -> str:
  if not codec:
    return 'codec unknown'

  def name(c):
    return ' level '.join(str(c[k]) for k in ('id', 'level') if k in c) if c else 'none'

  return f"arrays {name(codec['arrays'])}, OCDBT index {name(codec['index'])}"


def chart(report: dict[str, Any], path: str | Path) -> None:
  """Accuracy against bytes on disk (log x), AlexNet's float32 size as a reference line."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for row in report['formats']:
    ax.scatter(row['bytes'], row['accuracy'], zorder=3)
    # Slanted labels stay apart when formats tie on accuracy.
    ax.annotate(f"{row['format']} ({row['bytes'] / 1e6:.3g} MB)",
                (row['bytes'], row['accuracy']), textcoords='offset points', xytext=(2, 6),
                rotation=35, fontsize=8)
  ax.axvline(1e6, color='gray', linestyle=':', label='1 MB')
  if report['alexnet']:
    ax.axvline(report['alexnet']['float32_bytes'], color='gray', linestyle='--',
               label=f"AlexNet float32 ({report['alexnet']['float32_bytes'] / 1e6:.0f} MB)")
  ax.legend(loc='lower right')
  ax.margins(y=0.3)
  ax.set_xscale('log')
  ax.set_xlabel('bytes on disk')
  ax.set_ylabel(f"accuracy on {report['eval_split']}")
  ax.set_title(f"{_model_name(report['model'])}: size against accuracy")
  ax.grid(True, which='both', alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write(workdir: str, report: dict[str, Any]) -> None:
  workdir_lib.write_json(Path(workdir) / JSON_FILE, report)
  (Path(workdir) / MARKDOWN_FILE).write_text(markdown(report))
  chart(report, Path(workdir) / CHART_FILE)
