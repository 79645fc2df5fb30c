"""A `jax.export` (StableHLO) artifact of the inference function, for JAX serving.

The file holds the whole computation with the folded weights as constants, so it
runs without this package, the model code or Flax:

    exported = jax.export.deserialize(open('model.jax_exported', 'rb').read())
    logits = exported.call(images)  # uint8 [batch, S, S, 3] -> float32 [batch, classes]

The batch dimension is symbolic (any batch size, one compilation per size). The
artifact is lowered for CPU, CUDA and TPU, so it runs on whichever the server has.
`model.json` beside it describes the input and output and names the classes.
"""

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.deploy import inference
from squeezenet_jax.errors import UserError

DIRECTORY = 'stablehlo'
MODEL_FILE = 'model.jax_exported'
METADATA_FILE = 'model.json'
PLATFORMS = ('cpu', 'cuda', 'tpu')


def save(logits: Callable, input_shape: Sequence[Any], directory: str | os.PathLike, *,
         class_names: Sequence[str] | None = None,
         platforms: Sequence[str] = PLATFORMS) -> Path:
  """Exports `logits` (uint8 images -> logits) to `directory/model.jax_exported`.

  `input_shape` is (batch, S, S, 3); a string batch (as `inference.image_spec` gives)
  becomes a symbolic dimension. Returns the artifact's path.
  """
  batch, *image_shape = input_shape
  if isinstance(batch, str):
    (batch,) = jax.export.symbolic_shape(batch)
  spec = jax.ShapeDtypeStruct((batch, *image_shape), jnp.uint8)
  exported = jax.export.export(jax.jit(logits), platforms=tuple(platforms))(spec)
  directory = Path(directory)
  shutil.rmtree(directory, ignore_errors=True)
  directory.mkdir(parents=True)
  path = directory / MODEL_FILE
  path.write_bytes(exported.serialize())
  (out,) = exported.out_avals
  workdir_lib.write_json(directory / METADATA_FILE, {
      'input': {'shape': [None, *image_shape], 'dtype': 'uint8', 'layout': 'NHWC',
                'what': 'RGB pixels 0..255; normalisation is inside the model'},
      'output': {'shape': [None, int(out.shape[-1])], 'dtype': str(out.dtype),
                 'what': 'logits; softmax gives class probabilities'},
      'class_names': list(class_names) if class_names is not None else None,
      'platforms': list(exported.platforms),
      'load': f"jax.export.deserialize(open('{MODEL_FILE}', 'rb').read()).call(images)",
  })
  return path


def load(path: str | os.PathLike) -> jax.export.Exported:
  """The exported function; `.call(images)` runs it (jittable, any batch size)."""
  path = Path(path)
  if not path.is_file():
    raise UserError(f'no StableHLO export at {path}: run --mode=export first')
  return jax.export.deserialize(bytearray(path.read_bytes()))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
  """model.json beside the artifact at `path`."""
  return workdir_lib.read_json(Path(path).parent / METADATA_FILE)


def stablehlo_logits(path: str | os.PathLike, images: np.ndarray, *,
                     batch_size: int = 256) -> np.ndarray:
  """Logits of uint8 [N, S, S, 3] `images` from the artifact at `path`, in batches."""
  return inference.batched_logits(load(path).call, images, batch_size=batch_size)
