"""Quantization-aware training with qwix: the trained forward pass is the exported model's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qwix
from flax import nnx

from compression_fixtures import tiny_params
from conftest import tiny_config
from squeezenet_jax import models
from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import plan
from squeezenet_jax.compression import qat
from squeezenet_jax.errors import UserError


@pytest.mark.parametrize('bits', sorted(qat.QTYPES))
def test_the_one_encoder_gives_qwix_codes_and_scales(bits):
  """quantize.quantize_kernel is what qwix's quantized forward pass computes."""
  w = jax.random.normal(jax.random.PRNGKey(bits), (3, 3, 8, 6), jnp.float32)
  w = w.at[..., 0].set(0.0).at[0, 0, 0, 1].set(-5.0)  # a zero channel, a negative extreme
  ours = quantize.quantize_kernel(w, bits)
  theirs = qwix.quantize(w, qat.qtype(bits), channelwise_axes=[3])
  np.testing.assert_array_equal(ours['q'], np.asarray(theirs.qvalue).astype(np.int8))
  np.testing.assert_array_equal(ours['scale'], np.asarray(theirs.scale).reshape(-1))
  assert int(ours['q'].min()) == -2**(bits - 1)  # the top bucket is used


@pytest.mark.slow
def test_qat_forward_equals_the_dequantized_export_forward(bits=4):
  """int4 (int8 takes the same path: `qat.QTYPES`; its export round trip is tested with
  the file). Compiles three programs, so one width keeps the test short."""
  # Half the weights pruned by an earlier stage: QAT keeps them at code 0.
  params = quantize.map_kernels(lambda w: np.where(quantize.prune_mask(w, 0.5), w, 0.0),
                                tiny_params(seed=1))
  settings = plan.Settings('qat', bits=bits)
  trainable, state = plan.prepare(params, settings)
  model = models.create_model(tiny_config(), rngs=nnx.Rngs(0))
  images = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3), minval=-1, maxval=1)
  quantized = plan.transform_model(model, images, settings)
  graphdef, _, batch_stats = nnx.split(quantized, nnx.Param, nnx.BatchStat)
  plain_graphdef = nnx.split(model, nnx.Param, nnx.BatchStat)[0]

  def template(tree):
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, tree)
    return state

  @jax.jit
  def forward(trainable, batch_stats, images):
    params = template(state.to_params(trainable))
    return nnx.merge(graphdef, params, batch_stats, copy=True)(images, train=False)

  @jax.jit
  def plain_forward(params, batch_stats, images):
    return nnx.merge(plain_graphdef, template(params), batch_stats, copy=True)(images,
                                                                             train=False)

  exported = state.encode(trainable)
  weights = quantize.dequantize(exported)
  assert plan.sparsity(exported) >= 0.5 - 1e-3  # pruned weights are code 0
  for path, w in jax.tree_util.tree_flatten_with_path(weights)[0]:
    if quantize.is_kernel(path):
      assert len(np.unique(w.reshape(-1, w.shape[-1])[:, 1])) <= 2**bits
  qat_logits = forward(trainable, batch_stats, images)
  export_logits = plain_forward(weights, batch_stats, images)
  float_logits = plain_forward(params, batch_stats, images)
  np.testing.assert_allclose(qat_logits, export_logits, rtol=1e-4, atol=1e-5)
  # ... and it is not the float model's forward pass.
  assert np.abs(np.asarray(float_logits) - np.asarray(export_logits)).max() > 1e-4

  # The straight-through gradient reaches every kernel.
  def loss(trainable):
    params = template(state.to_params(trainable))
    out = nnx.merge(graphdef, params, batch_stats, copy=True)(
        images, train=True, rngs=jax.random.PRNGKey(1))
    return jnp.mean(out**2)

  grads = jax.jit(jax.grad(loss))(trainable)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    if quantize.is_kernel(path):
      assert np.any(np.asarray(g) != 0)


def test_quantized_activations_need_8_bit_weights():
  qat.check_activation_bits(8, 8)
  with pytest.raises(UserError, match='activation'):
    qat.check_activation_bits(4, 8)
