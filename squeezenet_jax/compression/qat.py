"""Quantization-aware training to int8/int4 weights with qwix (google/qwix).

`quantize_model` wraps an NNX model with qwix's quantized-training provider: every
conv and dense of the forward pass runs on weights quantized symmetrically per
output channel (the kernel's last axis, absmax calibration) and, optionally, on
activations quantized per call (dynamic range, so no extra state). The backward
pass is qwix's straight-through estimator. The parameters keep their float32 tree,
so optimizer, checkpoints and `nnx.split(model, nnx.Param, nnx.BatchStat)` are
unchanged; only the graphdef differs.

`encode` quantizes the trained kernels with `quantize.quantize_kernel`, the formula
qwix's forward pass uses (tested equal to `qwix.quantize`), so the exported codes
dequantize to exactly the weights the quantized forward pass used. They are stored as
`{'q': int8 codes, 'scale': float32 per output channel}`, which `quantize.dequantize`
reads for both widths; int4 codes lie in [-8, 7] and are packed two per byte on disk
(`container.pack_int4`).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from squeezenet_jax.compression import quantize
from squeezenet_jax.errors import UserError

QTYPES = {8: jnp.int8, 4: jnp.int4}

Tree = dict[str, Any]


def qtype(bits: int):
  """The qwix dtype of `bits`-bit codes (8 or 4)."""
  return QTYPES[bits]


def check_activation_bits(bits: int, activation_bits: int | None) -> None:
  """Only int8 x int8: qwix runs the conv in the codes' dtypes, and XLA refuses
  int8 x int4 operands and int4 activations (sub-byte converts) on CPU."""
  if activation_bits is not None and (activation_bits, bits) != (8, 8):
    raise UserError(f'activation_bits={activation_bits} with bits={bits}: quantized '
                    'activations need 8-bit activations and 8-bit weights')


def quantize_model(model: nnx.Module, sample: jax.Array, bits: int,
                   activation_bits: int | None = None) -> nnx.Module:
  """A copy of `model` whose convs/denses run quantized (qwix QT); `sample`: a float batch.

  qwix is imported here, by the qat stage alone: training, validation and the other
  stages import this module's checks without it (the GPU image has no qwix).
  """
  try:
    import qwix  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f'the qat stage needs qwix ({e}): pip install -r requirements.txt') from e
  check_activation_bits(bits, activation_bits)
  activations = {} if activation_bits is None else {
      # Dynamic range (per call): no calibration state to carry or checkpoint.
      'act_qtype': qtype(activation_bits), 'act_static_scale': False}
  rule = qwix.QtRule(module_path='.*', weight_qtype=qtype(bits), **activations)
  # skip_nnx_init: QT with dynamic ranges creates no variables, so qwix's eager first
  # call (an op-by-op forward pass, slow) has nothing to set up.
  return qwix.quantize_model(model, qwix.QtProvider([rule]), sample, train=False,
                             skip_nnx_init=True)


@functools.partial(jax.jit, static_argnums=1)
def _encode(params: Tree, bits: int) -> Tree:
  return quantize.map_kernels(lambda w: quantize.quantize_kernel(w, bits), params)


def encode(params: Tree, bits: int) -> Tree:
  """Kernels as qwix codes + scales, other leaves as they are (numpy; one compiled program)."""
  return jax.device_get(_encode(params, bits))
