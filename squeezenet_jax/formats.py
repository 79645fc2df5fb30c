"""Every format a run's weights are stored in: how each is written, read back and run.

Weight formats are read back as float32 `{'params', 'batch_stats'}` numpy trees,
which the JAX model scores and predict classifies with:
  float32, bfloat16, int8  orbax: only the parameters change, BN statistics stay float32;
  compressed               pruned, k-means-shared kernels (Deep Compression), a byte per code;
  <stage>                  a `--mode=compress` stage's codes (prune, share, QAT).
`compressed` and every stage are one file format (`compression.container`, `FILE`).
Runtime formats hold the folded inference function and give logits themselves:
  onnx, onnx_int8  ONNX Runtime (CPU);  stablehlo  a `jax.export` artifact.
`row` builds every sizes.json row, so every format is reported alike.
"""

import shutil
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from flax import traverse_util

from squeezenet_jax import checkpoints
from squeezenet_jax import exports
from squeezenet_jax import models
from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import container
from squeezenet_jax.deploy import onnx_export
from squeezenet_jax.deploy import stablehlo_export
from squeezenet_jax.errors import UserError

WEIGHTS = ('float32', 'bfloat16', 'int8', 'compressed')  # `--mode=export`'s, in this order
# Runtime format -> its file inside `exports/`.
RUNTIMES = {
    'onnx': f'{onnx_export.FLOAT32_DIR}/{onnx_export.MODEL_FILE}',
    'onnx_int8': f'{onnx_export.INT8_DIR}/{onnx_export.MODEL_FILE}',
    'stablehlo': f'{stablehlo_export.DIRECTORY}/{stablehlo_export.MODEL_FILE}',
}
FILE = container.FILE  # the compressed file's name: `compressed` and every compress stage
PARTS = ('params', 'batch_stats')

Tree = dict[str, Any]


def to_numpy(variables: dict[str, nnx.State]) -> Tree:
  """A run's model variables as nested dicts of numpy arrays, what the encoders take."""
  return jax.device_get({part: nnx.to_pure_dict(variables[part]) for part in PARTS})


def encode(fmt: str, model: Tree, settings: ml_collections.ConfigDict) -> Tree:
  """What weight format `fmt` stores (`settings`: the run's `export` block)."""
  params = model['params']
  if fmt == 'bfloat16':
    params = quantize.to_bfloat16(params)
  elif fmt == 'int8':
    params = quantize.encode_int8(params)
  elif fmt == 'compressed':
    params = quantize.encode_compressed(params, settings.bits, settings.prune_fraction)
  return {'params': params, 'batch_stats': model['batch_stats']}


def write(fmt: str, model: Tree, directory: Path, settings: ml_collections.ConfigDict) -> None:
  """Writes weight format `fmt` of `model` to `directory`, replacing an earlier one."""
  shutil.rmtree(directory, ignore_errors=True)
  stored = encode(fmt, model, settings)
  if fmt == 'compressed':
    directory.mkdir(parents=True)
    container.write(directory / FILE, stored, coding='packed')
  else:
    # Outermost: orbax reports a failed write when the checkpointer closes.
    with checkpoints.writing(f'the {fmt} export in {directory}'), (
        ocp.StandardCheckpointer()) as checkpointer:
      checkpointer.save(directory.absolute(), stored)


def write_codes(directory: Path, params: Tree, batch_stats: Tree,
                compress: ml_collections.ConfigDict) -> Tree:
  """Writes a compress stage's codes (`compress`: the run's block); returns the file's
  tree as read back from disk."""
  container.write(directory / FILE, {'params': params, 'batch_stats': batch_stats},
                  coding=compress.coding, raw_dtype=compress.vector_dtype)
  return container.read(directory / FILE)


def dequantized(stored: Tree) -> Tree:
  """A stored tree as float32 params and batch_stats.

  A part without arrays (no BatchNorm) may not survive an orbax round trip.
  """
  return quantize.dequantize({part: stored.get(part, {}) for part in PARTS})


def read(directory: Path) -> Tree:
  """A weight format's folder read back from disk, dequantised to float32."""
  if (directory / FILE).is_file():
    return dequantized(container.read(directory / FILE))
  with ocp.StandardCheckpointer() as checkpointer:
    return dequantized(checkpointer.restore(directory.absolute()))


def is_weights(workdir: str | Path, fmt: str) -> bool:
  """Whether `fmt` names a weight format, or a compress stage the run has a file of."""
  return fmt in WEIGHTS or (exports.exports_dir(workdir) / fmt / FILE).is_file()


def runtime_path(workdir: str | Path, fmt: str) -> Path:
  return exports.exports_dir(workdir) / RUNTIMES[fmt]


def runtime_logits(path: Path, fmt: str, images: np.ndarray, batch_size: int) -> np.ndarray:
  """Logits of uint8 [N, S, S, 3] images from the runtime format's file at `path`."""
  if fmt == 'stablehlo':
    return stablehlo_export.stablehlo_logits(path, images, batch_size=batch_size)
  return onnx_export.onnx_logits(path, images)


def check_matches(config: ml_collections.ConfigDict, model: Tree, source: Path) -> None:
  """Refuses weights of another model (an export copied from another run, or edited)."""
  _, params, batch_stats = nnx.split(models.abstract_model(config), nnx.Param, nnx.BatchStat)
  expected = traverse_util.flatten_dict({'params': nnx.to_pure_dict(params),
                                         'batch_stats': nnx.to_pure_dict(batch_stats)}, sep='/')
  found = traverse_util.flatten_dict(model, sep='/')
  shapes = {k: tuple(getattr(found[k], 'shape', ())) for k in found}
  wrong = sorted(set(expected) ^ set(found)) or sorted(
      k for k in expected if shapes[k] != tuple(expected[k].shape))
  if wrong:
    raise UserError(f'{source} holds the weights of another model (first difference: '
                    f'{wrong[0]}): it is not an export of this run\'s config; run '
                    '--mode=export again')


def row(fmt: str, directory: Path, scores: dict[str, float], note: str = '',
        **fields: Any) -> dict[str, Any]:
  """The sizes.json row of `fmt`'s folder: bytes on disk, the scores of what was read
  back from it, its path in the workdir, and `fields`; logged as one line."""
  result = {'format': fmt, 'bytes': checkpoints.directory_bytes(directory),
            'accuracy': scores['accuracy'], 'loss': scores['loss'],
            'path': f'{exports.EXPORTS_DIR}/{directory.name}', **fields}
  logging.info('%-10s %12s bytes  accuracy %.4f%s', fmt, f'{result["bytes"]:,}',
               result['accuracy'], f'  {note}' if note else '')
  return result
