"""`--mode=export`'s deployable formats: ONNX float32 and int8, and a StableHLO artifact.

All three hold the same inference function (`deploy.inference`: BatchNorm folded into
the convs, uint8 pixels in, normalisation inside, logits out). Each is written, read
back from disk and scored in its own runtime on the split the other formats are
scored on: ONNX with ONNX Runtime (CPU), StableHLO through `jax.export` on the default
device. The int8 ONNX's activation ranges are calibrated on training images; where
the data holds no train split (a `data.path` with only `test/`), on the scored
split's, which the row then says (`calibration_split`).
"""

import dataclasses
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from squeezenet_jax import exports
from squeezenet_jax import formats
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.data import dataset as dataset_lib
from squeezenet_jax.deploy import inference
from squeezenet_jax.deploy import onnx_export
from squeezenet_jax.deploy import stablehlo_export
from squeezenet_jax.training import trainer as trainer_lib
from squeezenet_jax.training import steps

Tree = dict[str, Any]
FORMATS = tuple(formats.RUNTIMES)


@dataclasses.dataclass(frozen=True)
class Deployed:
  rows: list[dict[str, Any]]  # sizes.json `formats` rows: onnx, onnx_int8
  stablehlo: dict[str, Any]  # sizes.json `stablehlo`: bytes, accuracy, loss, path


def calibration_images(config: ml_collections.ConfigDict,
                       restored: trainer_lib.RestoredRun) -> tuple[np.ndarray, str]:
  """(a seeded sample of training images, 'train'), or of the scored split's images."""
  if 'train' in dataset_lib.available_splits(config.data):
    images = dataset_lib.load_dataset(config.data, ('train',)).splits['train'].images
    return onnx_export.calibration_sample(images), 'train'
  logging.warning('The data (%s) has no train split: the int8 ONNX export is calibrated on '
                  'the images of %s, the split it is scored on.', config.data.path,
                  restored.split)
  images = restored.scorer.dataset.splits[restored.split].images
  return onnx_export.calibration_sample(images), restored.split


def scores(restored: trainer_lib.RestoredRun, logits: np.ndarray) -> dict[str, float]:
  """Accuracy and loss of logits of the scored split, as `--mode=eval` computes them."""
  labels = restored.scorer.dataset.splits[restored.split].labels
  losses = steps.cross_entropy(logits, labels, restored.config.label_smoothing)
  correct = np.sum(np.argmax(logits, axis=-1) == labels)
  # In float32, as the compiled scorer divides: equal accuracies then compare equal.
  return {'accuracy': float(np.float32(correct) / np.float32(len(labels))),
          'loss': float(jax.device_get(losses).mean())}


def _row(fmt: str, path: Path, restored: trainer_lib.RestoredRun, images: np.ndarray,
         **fields: Any) -> dict[str, Any]:
  """The row of the runtime format's file at `path`, scored in its runtime from disk."""
  logits = formats.runtime_logits(path, fmt, images, restored.config.eval_batch_size)
  return formats.row(fmt, path.parent, scores(restored, logits), **fields)


def export(restored: trainer_lib.RestoredRun, model: Tree,
           transaction: exports.Transaction) -> Deployed:
  """Writes {onnx,onnx_int8,stablehlo}/ (uncommitted), each scored from disk."""
  config = restored.config
  images = restored.scorer.dataset.splits[restored.split].images
  class_names = (workdir_lib.read_classes(restored.workdir)
                 or list(restored.scorer.dataset.class_names))
  logits = inference.logits_fn(config, model)
  spec = inference.image_spec(config)

  logging.info('Converting to ONNX (a minute or two on a CPU) ...')
  float32 = onnx_export.save_float32(logits, spec,
                                     transaction.directory(onnx_export.FLOAT32_DIR),
                                     class_names=class_names)
  calibration, split = calibration_images(config, restored)
  int8 = onnx_export.save_int8(float32, calibration,
                               transaction.directory(onnx_export.INT8_DIR))
  rows = [_row('onnx', float32, restored, images),
          _row('onnx_int8', int8, restored, images, calibration_split=split,
               calibration_images=len(calibration))]

  artifact = stablehlo_export.save(logits, spec,
                                   transaction.directory(stablehlo_export.DIRECTORY),
                                   class_names=class_names)
  stablehlo = _row('stablehlo', artifact, restored, images)
  return Deployed(rows=rows, stablehlo=stablehlo)
