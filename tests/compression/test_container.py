"""The compressed file: ANS streams at the entropy, int4 packing, exact decoding."""

import pickle
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from compression_fixtures import tiny_params
from conftest import REPO_ROOT
from squeezenet_jax import checkpoints
from squeezenet_jax.compression import quantize
from squeezenet_jax.compression import container
from squeezenet_jax.compression import entropy
from squeezenet_jax.compression import plan
from squeezenet_jax.compression import qat
from squeezenet_jax.errors import UserError


def _is_leaf(x):
  return isinstance(x, (quantize.SharedWeights, dict)) and (
      not isinstance(x, dict) or set(x) == {'q', 'scale'})


def _assert_same_tree(a, b):
  a_leaves, a_def = jax.tree_util.tree_flatten(a, is_leaf=_is_leaf)
  b_leaves, b_def = jax.tree_util.tree_flatten(b, is_leaf=_is_leaf)
  assert a_def == b_def
  for x, y in zip(a_leaves, b_leaves):
    if isinstance(x, quantize.SharedWeights):
      assert x.shape == y.shape
      np.testing.assert_array_equal(x.codebook, y.codebook)
      np.testing.assert_array_equal(x.indices, y.indices)
    elif isinstance(x, dict):
      np.testing.assert_array_equal(x['q'], y['q'])
      np.testing.assert_array_equal(x['scale'], y['scale'])
    else:
      np.testing.assert_array_equal(x, y)


def test_int4_packing_round_trips_two_codes_per_byte():
  codes = np.array([-8, -1, 0, 7, 3, -5, 6], np.int8)
  packed = container.pack_int4(codes)
  assert packed.dtype == np.uint8 and packed.size == 4
  np.testing.assert_array_equal(container.unpack_int4(packed, codes.size), codes)
  many = np.random.default_rng(0).integers(-8, 8, size=10001).astype(np.int8)
  np.testing.assert_array_equal(container.unpack_int4(container.pack_int4(many), many.size), many)


def test_ans_stream_decodes_exactly_at_its_entropy():
  rng = np.random.default_rng(0)
  probabilities = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0])
  symbols = rng.choice(8, size=50_000, p=probabilities)
  counts = entropy.histogram(symbols, 8)
  data = entropy.encode(symbols, counts)
  np.testing.assert_array_equal(entropy.decode(data, counts, symbols.size), symbols)
  p = counts[counts > 0] / symbols.size
  bits = -(counts[counts > 0] * np.log2(p)).sum()
  assert bits / 8 <= len(data) <= bits / 8 * 1.001 + 8
  assert entropy.encode([], counts) == b'' and entropy.decode(b'', counts, 0).size == 0
  constant = np.zeros(1000, int)
  assert len(entropy.encode(constant, entropy.histogram(constant, 8))) <= 8
  with pytest.raises(ValueError, match='outside'):
    entropy.histogram([0, 8], 8)


@pytest.fixture(scope='module')
def encoded():
  """A tiny model as a trained-sharing export (pruned 50%, 4 bits) and as int4/int8 codes."""
  params = tiny_params()
  trainable, state = plan.prepare(params, plan.Settings('share', bits=4, sparsity=0.5))
  return {'shared': state.encode(trainable), 'int4': qat.encode(params, 4),
          'int8': qat.encode(params, 8)}


@pytest.mark.parametrize('coding', container.CODINGS)
@pytest.mark.parametrize('kind', ['shared', 'int4', 'int8'])
def test_file_decodes_to_exactly_the_quantized_weights(tmp_path, encoded, kind, coding):
  tree = encoded[kind]
  path = tmp_path / 'model.sqz'
  size = container.write(path, tree, coding=coding)
  assert size == path.stat().st_size
  loaded = container.read(path)
  _assert_same_tree(loaded, tree)
  jax.tree.map(np.testing.assert_array_equal, quantize.dequantize(loaded),
               quantize.dequantize(tree))


def test_ans_beats_lzma_on_sparse_codes_and_packed_int4_is_half_of_int8(tmp_path, encoded):
  sizes = {(kind, coding): container.write(tmp_path / f'{kind}.{coding}', encoded[kind], coding)
           for kind in encoded for coding in container.CODINGS}
  kernel_params = sum(x.size for path, x in jax.tree_util.tree_flatten_with_path(
      quantize.dequantize(encoded['int8']))[0] if quantize.is_kernel(path))
  # Sparse codes: ANS codes the zeros at their entropy. (On this tiny random model,
  # dense int codes are near-uniform, and ANS and lzma end within a few hundred bytes.)
  assert sizes['shared', 'ans'] < 0.97 * sizes['shared', 'packed']
  # lzma cannot shrink the packed random-ish codes much: int4 takes about half the bytes.
  half = sizes['int8', 'packed'] - sizes['int4', 'packed']
  assert 0.4 * kernel_params < half < 0.6 * kernel_params


def test_float16_vectors_halve_and_round_the_raw_leaves(tmp_path, encoded):
  tree = encoded['int8']
  full = container.write(tmp_path / 'a', tree, raw_dtype='float32')
  half = container.write(tmp_path / 'b', tree, raw_dtype='float16')
  assert half < full
  bias = container.read(tmp_path / 'b')['conv10']['conv']['bias']
  np.testing.assert_array_equal(bias, tree['conv10']['conv']['bias'].astype(np.float16))


def test_bad_files_and_settings_are_user_errors(tmp_path, encoded):
  (tmp_path / 'x').write_bytes(b'not a model')
  with pytest.raises(UserError, match='not a compressed'):
    container.read(tmp_path / 'x')
  # A truncated file (a copy cut short, a full disk) is named, not a traceback.
  whole = container.write(tmp_path / 'z', encoded['int8'])
  with open(tmp_path / 'z', 'r+b') as f:
    f.truncate(whole // 2)
  with pytest.raises(UserError, match='z is a damaged compressed SqueezeNet file'):
    container.read(tmp_path / 'z')
  with pytest.raises(ValueError, match='huffman'):
    container.write(tmp_path / 'y', encoded['int8'], coding='huffman')


def test_a_packed_file_needs_no_entropy_coder(tmp_path, encoded):
  """The `compressed` export is written where constriction is not installed."""
  path, pickled = tmp_path / 'p', tmp_path / 'tree.pickle'
  pickled.write_bytes(pickle.dumps(encoded['shared']))
  code = ('import sys; sys.modules["constriction"] = None\n'
          'import pickle; from squeezenet_jax.compression import container\n'
          f'tree = pickle.loads(open({str(pickled)!r}, "rb").read())\n'
          f'container.write({str(path)!r}, tree, coding="packed")\n'
          f'container.read({str(path)!r})\n'
          'assert "squeezenet_jax.compression.entropy" not in sys.modules')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  _assert_same_tree(container.read(path), encoded['shared'])


@pytest.mark.parametrize('settings', [plan.Settings('prune', sparsity=0.5, end_step=4),
                                      plan.Settings('share', bits=4)])
def test_plan_state_checkpoints_and_restores_into_a_fresh_prepare(tmp_path, settings):
  """What a resumed compress run does: prepare() again, restore the arrays into it."""
  params = tiny_params()
  trainable, state = plan.prepare(params, settings)
  trained = jax.tree.map(lambda x: x * 2, trainable)  # stands for fine-tuned values
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / 'ckpt', {'trainable': trained, 'state': state})
  target = checkpoints.abstract_like(dict(zip(('trainable', 'state'),
                                              plan.prepare(params, settings))))
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(tmp_path / 'ckpt', target)
  assert restored['state'].settings == settings
  jax.tree.map(np.testing.assert_array_equal, restored['state'], state)
  jax.tree.map(np.testing.assert_array_equal, restored['trainable'], trained)
