"""Weight compression: int8 error bounds, pruning, weight sharing, the compressed file."""

import numpy as np
import pytest

from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import container


def _kernel(shape=(3, 3, 8, 16), seed=0):
  """Normal weights with a different scale per output channel, one channel all zero."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=shape) * rng.uniform(0.01, 2.0, size=shape[-1])
  w[..., 0] = 0.0
  return w.astype(np.float32)


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  return {'params': {'conv1': {'conv': {'kernel': _kernel(seed=seed),
                                        'bias': rng.normal(size=16).astype(np.float32)}},
                     'fc': {'dense': {'kernel': _kernel((64, 10), seed + 1)}}},
          'batch_stats': {'conv1': {'bn': {'mean': rng.normal(size=16).astype(np.float32)}}}}


def test_int8_round_trip_is_within_half_a_step_per_channel():
  w = _kernel()
  encoded = quantize.quantize_int8(w)
  assert encoded['q'].dtype == np.int8 and encoded['scale'].shape == (16,)
  error = np.abs(quantize.dequantize_int8(encoded) - w)
  assert np.all(error <= encoded['scale'] / 2 + 1e-7)
  # Symmetric: each nonzero channel's largest weight reaches the end of the range.
  assert np.all(np.abs(encoded['q'].astype(int)).reshape(-1, 16).max(0)[1:] >= 127)
  assert np.all(encoded['q'][..., 0] == 0)


def test_only_kernels_are_encoded():
  tree = _tree()
  encoded = quantize.encode_int8(tree)
  assert set(encoded['params']['conv1']['conv']['kernel']) == {'q', 'scale'}
  assert encoded['params']['conv1']['conv']['bias'] is tree['params']['conv1']['conv']['bias']
  assert encoded['batch_stats'] == tree['batch_stats']


@pytest.mark.parametrize('fraction', [0.0, 0.33, 0.9])
def test_prune_mask_drops_exactly_the_smallest_weights(fraction):
  w = np.random.default_rng(1).normal(size=(3, 3, 8, 16))
  keep = quantize.prune_mask(w, fraction)
  assert (~keep).sum() == int(fraction * w.size)
  if 0 < fraction:
    assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min()




def test_weight_sharing_uses_the_codebook_and_a_zero_code_for_pruned_weights():
  w = np.random.default_rng(2).normal(size=(3, 3, 16, 32)).astype(np.float32)
  shared = quantize.share_weights(w, bits=4, prune_fraction=0.5)
  assert shared.codebook.shape == (16,) and shared.codebook[0] == 0.0
  pruned = shared.indices == 0
  assert pruned.sum() == w.size // 2
  np.testing.assert_array_equal(pruned, ~quantize.prune_mask(w, 0.5).ravel())
  np.testing.assert_array_equal(shared.dequantize(),
                                shared.codebook[shared.indices].reshape(w.shape))
  # 15 clusters of the kept weights: each lands near its centroid.
  kept = w.ravel()[~pruned]
  assert np.abs(shared.dequantize().ravel()[~pruned] - kept).max() < np.ptp(kept) / 15


def test_kmeans_beats_its_linear_initialisation():
  x = np.random.default_rng(3).normal(size=5000)
  centroids, assignment = quantize.kmeans_1d(x, 8)
  linear = np.linspace(x.min(), x.max(), 8)
  linear_error = np.min((x[:, None] - linear) ** 2, axis=1).mean()
  assert ((x - centroids[assignment]) ** 2).mean() < 0.7 * linear_error


def test_the_compressed_export_loads_to_codebook_lookups(tmp_path):
  tree = _tree()
  encoded = quantize.encode_compressed(tree, bits=5, prune_fraction=0.33)
  path = tmp_path / container.FILE
  container.write(path, encoded, coding='packed')  # as --mode=export writes it
  loaded = container.read(path)
  for layer, module in (('conv1', 'conv'), ('fc', 'dense')):
    written = encoded['params'][layer][module]['kernel']
    read = loaded['params'][layer][module]['kernel']
    assert isinstance(read, quantize.SharedWeights) and read.shape == written.shape
    np.testing.assert_array_equal(read.codebook, written.codebook)
    np.testing.assert_array_equal(read.indices, written.indices)
    weights = quantize.dequantize(loaded)['params'][layer][module]['kernel']
    np.testing.assert_array_equal(weights, read.codebook[read.indices].reshape(read.shape))
    assert (weights == 0).mean() >= 0.33 - 1 / weights.size
  np.testing.assert_array_equal(quantize.dequantize(loaded)['params']['conv1']['conv']['bias'],
                                tree['params']['conv1']['conv']['bias'])
  np.testing.assert_array_equal(loaded['batch_stats']['conv1']['bn']['mean'],
                                tree['batch_stats']['conv1']['bn']['mean'])


@pytest.mark.parametrize('bits', [0, 9])
def test_codes_wider_than_a_byte_are_a_programming_error(bits):
  """A user's export.bits is checked in validation; here only the uint8 code limit."""
  with pytest.raises(ValueError, match=f'bits={bits} is outside 1..8'):
    quantize.encode_compressed(_tree(), bits=bits, prune_fraction=0.3)
