"""ONNX exports of the inference function, and scoring them with ONNX Runtime.

float32: `inference.logits_fn` converted by jax2onnx (the maintained JAX/Flax NNX to
ONNX converter), checked by `onnx.checker`. Input `images`: uint8 [batch, S, S, 3]
with a dynamic batch; output `logits`: float32 [batch, classes]. Normalisation and
the folded BatchNorm are in the graph, so a runtime feeds raw pixels.

int8: ONNX Runtime's static quantizer on the float32 file: QDQ format, int8 weights
per output channel, int8 activations whose ranges are calibrated (min/max) on
training images.

Everything is scored on ONNX Runtime's CPU execution provider, the runtime such a
model ships to, so the accuracy reported is that of the file and that runtime.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime
from onnxruntime import quantization
from onnxruntime.quantization import shape_inference

from squeezenet_jax.errors import UserError

FLOAT32_DIR = 'onnx'
INT8_DIR = 'onnx_int8'
MODEL_FILE = 'model.onnx'
INPUT_NAME = 'images'
OUTPUT_NAME = 'logits'
# Opset 21 (ONNX 1.16): ONNX Runtime 1.18+ and most other runtimes read it; jax2onnx's
# default, 23, needs the newest ones.
OPSET = 21
CLASS_NAMES_KEY = 'class_names'  # metadata_props entry: JSON list of class names
CALIBRATION_IMAGES = 512  # training images (a seeded sample) the int8 ranges come from
BATCH_SIZE = 256  # images per ONNX Runtime call


def save_float32(logits: Callable, input_shape: Sequence[Any], directory: str | os.PathLike,
                 *, class_names: Sequence[str] | None = None,
                 model_name: str = 'squeezenet_jax') -> Path:
  """Converts `logits` (uint8 images -> logits) to `directory/model.onnx`; returns the path.

  `input_shape` is (batch, S, S, 3) with a string batch (e.g. 'B') for a dynamic one,
  as `inference.image_spec` gives it. `class_names` are stored in the file's metadata
  (`class_names`, a JSON list), so a runtime can name its predictions.
  """
  # Imported here, for conversion only: jax2onnx registers its plugins at import.
  import jax2onnx  # pylint: disable=g-import-not-at-top

  _load_jax_plugins_only()
  proto = jax2onnx.to_onnx(
      logits, inputs=[jax.ShapeDtypeStruct(tuple(input_shape), jnp.uint8)],
      model_name=model_name, opset=OPSET, input_names=[INPUT_NAME],
      output_names=[OUTPUT_NAME])
  if class_names is not None:
    onnx.helper.set_model_props(proto, {CLASS_NAMES_KEY: json.dumps(list(class_names))})
  onnx.checker.check_model(proto, full_check=True)
  path = _fresh(directory) / MODEL_FILE
  onnx.save_model(proto, path)
  return path


def _load_jax_plugins_only() -> None:
  """Registers jax2onnx's JAX and Flax plugins alone, before `to_onnx` would import every
  plugin tree: the Equinox ones build example models at import, most of the conversion's
  time, and `logits` (JAX and Flax pooling) never uses them. A jax2onnx without these
  internals imports everything, as it would unaided.
  """
  from jax2onnx.plugins import plugin_system  # pylint: disable=g-import-not-at-top
  if not (hasattr(plugin_system, '_import_tree')
          and hasattr(plugin_system, '_already_imported_plugins')):
    return
  if not plugin_system._already_imported_plugins:  # pylint: disable=protected-access
    root = Path(plugin_system.__file__).parent
    for tree in ('jax', 'flax'):
      plugin_system._import_tree(root / tree, f'jax2onnx.plugins.{tree}')  # pylint: disable=protected-access
    plugin_system._already_imported_plugins = True  # pylint: disable=protected-access


class _ArrayReader(quantization.CalibrationDataReader):
  """ONNX Runtime's calibration input: a numpy array of images, in batches."""

  def __init__(self, images: np.ndarray, batch_size: int):
    super().__init__()
    self._batches = iter([images[i:i + batch_size] for i in range(0, len(images), batch_size)])

  def get_next(self) -> dict[str, np.ndarray] | None:
    batch = next(self._batches, None)
    return None if batch is None else {INPUT_NAME: batch}


def save_int8(float32_path: str | os.PathLike, calibration_images: np.ndarray,
              directory: str | os.PathLike, *, batch_size: int = BATCH_SIZE) -> Path:
  """Quantizes the float32 ONNX file to `directory/model.onnx` (QDQ, per-channel int8).

  `calibration_images` (uint8, N x S x S x 3; a few hundred training images is
  plenty) set the activation ranges. The float32 graph is first simplified by
  `quant_pre_process` (shape inference, constant folding, layout transposes
  cancelled), as ONNX Runtime recommends before quantizing.
  """
  if not len(calibration_images):
    raise UserError('int8 ONNX export needs calibration images; none were given')
  reader = _ArrayReader(np.asarray(calibration_images, np.uint8), batch_size)
  # Its temporary files beside the export: on its filesystem, named in a disk-full error.
  with tempfile.TemporaryDirectory(dir=Path(directory).parent) as tmp:
    prepared, quantized = Path(tmp) / 'prepared.onnx', Path(tmp) / MODEL_FILE
    shape_inference.quant_pre_process(str(float32_path), str(prepared))
    # The quantizer also derives (unused) parameters for the excluded -inf tensors.
    with np.errstate(invalid='ignore', divide='ignore'):
      quantization.quantize_static(
          prepared, quantized, reader, quant_format=quantization.QuantFormat.QDQ,
          per_channel=True, activation_type=quantization.QuantType.QInt8,
          weight_type=quantization.QuantType.QInt8,
          calibrate_method=quantization.CalibrationMethod.MinMax,
          nodes_to_exclude=_infinite_pads(onnx.load(prepared)))
    _copy_metadata(float32_path, quantized)
    path = _fresh(directory) / MODEL_FILE
    shutil.move(quantized, path)
  return path


def _copy_metadata(source: str | os.PathLike, target: Path) -> None:
  """The float32 file's metadata (class names), which the quantizer drops, onto `target`."""
  props = {p.key: p.value for p in onnx.load(source, load_external_data=False).metadata_props}
  if props:
    model = onnx.load(target)
    onnx.helper.set_model_props(model, props)
    onnx.save_model(model, target)


def class_names(path: str | os.PathLike) -> list[str] | None:
  """The class names stored in an ONNX file by `save_float32`, or None."""
  model = onnx.load(path, load_external_data=False)
  props = {p.key: p.value for p in model.metadata_props}
  return json.loads(props[CLASS_NAMES_KEY]) if CLASS_NAMES_KEY in props else None


def _infinite_pads(model: onnx.ModelProto) -> list[str]:
  """Pad nodes that pad with -inf (ceil-mode max pools) and the pools they feed.

  Their outputs hold -inf, which no int8 scale can represent; they stay float
  (a max pool gives the same result before or after quantizing anyway).
  """
  constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
  constants.update({node.output[0]: onnx.numpy_helper.to_array(node.attribute[0].t)
                    for node in model.graph.node
                    if node.op_type == 'Constant' and node.attribute[0].name == 'value'})
  pads = [node for node in model.graph.node if node.op_type == 'Pad' and len(node.input) > 2
          and np.isneginf(constants.get(node.input[2], np.zeros(()))).any()]
  padded = {node.output[0] for node in pads}
  pools = [node for node in model.graph.node
           if node.op_type == 'MaxPool' and node.input[0] in padded]
  return [node.name for node in pads + pools]


def session(path: str | os.PathLike):
  """An ONNX Runtime session on the CPU execution provider."""
  if not Path(path).is_file():
    raise UserError(f'no ONNX model at {path}: run --mode=export first')
  return onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])


def onnx_logits(path: str | os.PathLike, images: np.ndarray, *,
                batch_size: int = BATCH_SIZE) -> np.ndarray:
  """Logits [N, classes] of uint8 [N, S, S, 3] `images` from the ONNX file, in batches."""
  sess = session(path)
  expected = sess.get_inputs()[0].shape[1:]
  if tuple(images.shape[1:]) != tuple(expected):
    raise UserError(f'{path} takes images of shape {expected}, got {tuple(images.shape[1:])}')
  images = np.asarray(images, np.uint8)
  outputs = [sess.run([OUTPUT_NAME], {INPUT_NAME: images[i:i + batch_size]})[0]
             for i in range(0, len(images), batch_size)]
  return np.concatenate(outputs) if outputs else np.zeros((0, sess.get_outputs()[0].shape[1]),
                                                          np.float32)


def calibration_sample(images: np.ndarray, n: int = CALIBRATION_IMAGES,
                       seed: int = 0) -> np.ndarray:
  """n images drawn without replacement (all of them if fewer), the same every time."""
  if len(images) <= n:
    return images
  return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]


def _fresh(directory: str | os.PathLike) -> Path:
  """`directory`, emptied of an earlier export of the same format."""
  directory = Path(directory)
  shutil.rmtree(directory, ignore_errors=True)
  directory.mkdir(parents=True)
  return directory
