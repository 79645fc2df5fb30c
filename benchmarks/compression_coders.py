"""Which entropy coder for compressed kernels: bytes on a trained run's weights.

    python -m benchmarks.compression_coders --workdir=W [--out=FILE.json] [--score]

For each (bits, sparsity) it prunes and k-means-shares the run's kernels after
training (as `--mode=export` does), then counts the bytes of the kernels under:
  lzma      one byte per index, lzma'd (the `compressed` export's `packed` coding)
  huffman   one Huffman code per kernel over its indices (zeros included)
  paper     Deep Compression's layout: relative indices of the nonzeros (8-bit gaps,
            filler zeros past 255; 5-bit for dense kernels) and their codebook
            indices, each Huffman-coded per kernel
  ans       `compression.entropy` (constriction ANS, one histogram per kernel)
  entropy   the order-0 bound: each kernel's index entropy, no tables
Huffman sizes are counted exactly from the code lengths (sum of count x length),
with code-length tables at 5 bits per symbol; every coder also pays the float32
codebooks. It also writes whole files (`compression.container`, packed or ANS, with
float32 or float16 vectors; packed float32 is the `compressed` export), linear int8/int4 codes
(packed against ANS), and with --score the validation accuracy of each file read
back from disk.
"""

import heapq
import json
import lzma
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from absl import app
from absl import flags

from squeezenet_jax import formats
from squeezenet_jax.compression import quantize
from squeezenet_jax import trained_run
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.compression import container
from squeezenet_jax.compression import entropy
from squeezenet_jax.compression import qat
from squeezenet_jax.modes import export
from squeezenet_jax.training import trainer as trainer_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'a trained run', required=True)
_OUT = flags.DEFINE_string('out', '', 'write the results here as JSON')
_SCORE = flags.DEFINE_bool('score', False, 'also score each file on the eval split')
_SETTINGS = ((6, 0.2), (6, 0.33), (5, 0.5), (4, 0.0), (4, 0.5), (4, 0.6), (3, 0.7))
_TABLE_BITS = 5  # a Huffman code length per symbol


def huffman_lengths(counts: np.ndarray) -> np.ndarray:
  """Code length of each symbol of a Huffman code for `counts` (0 where unused)."""
  used = [(int(c), i, (i,)) for i, c in enumerate(counts) if c > 0]
  lengths = np.zeros(len(counts), np.int64)
  if len(used) == 1:
    lengths[used[0][1]] = 1
    return lengths
  heapq.heapify(used)
  tiebreak = len(counts)
  while len(used) > 1:
    c1, _, s1 = heapq.heappop(used)
    c2, _, s2 = heapq.heappop(used)
    lengths[list(s1 + s2)] += 1
    heapq.heappush(used, (c1 + c2, tiebreak, s1 + s2))
    tiebreak += 1
  return lengths


def huffman_bytes(symbols: np.ndarray, alphabet: int) -> float:
  counts = np.bincount(symbols, minlength=alphabet)
  bits = int((counts * huffman_lengths(counts)).sum())
  return bits / 8 + alphabet * _TABLE_BITS / 8


def relative_index_streams(indices: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
  """Deep Compression's sparse layout: (gaps, codebook indices) of the stored entries."""
  span = 2**gap_bits - 1
  gaps, codes = [], []
  last = -1
  for position in np.flatnonzero(indices):
    gap = position - last
    while gap > span:  # a filler entry: a zero weight `span` further on
      gaps.append(span)
      codes.append(0)
      gap -= span
    gaps.append(gap)
    codes.append(indices[position])
    last = position
  return np.asarray(gaps, np.int64), np.asarray(codes, np.int64)


def order0_bits(symbols: np.ndarray, alphabet: int) -> float:
  counts = np.bincount(symbols, minlength=alphabet)
  p = counts[counts > 0] / symbols.size
  return float(-(counts[counts > 0] * np.log2(p)).sum())


def kernel_bytes(shared: list[tuple[str, quantize.SharedWeights]]) -> dict[str, float]:
  """Bytes of the kernels (codebooks included) under each coder."""
  sizes = dict.fromkeys(('lzma', 'huffman', 'paper', 'ans', 'entropy'), 0.0)
  lzma_input = []
  for _, leaf in shared:
    k = leaf.codebook.size
    codebook = 4 * k
    lzma_input.append(leaf.codebook.astype('<f4').tobytes() + leaf.indices.tobytes())
    symbols = leaf.indices.astype(np.int64)
    sizes['huffman'] += codebook + huffman_bytes(symbols, k)
    gaps, codes = relative_index_streams(symbols, 8 if len(leaf.shape) > 2 else 5)
    gap_alphabet = 2**(8 if len(leaf.shape) > 2 else 5)
    sizes['paper'] += codebook + (huffman_bytes(gaps, gap_alphabet) + huffman_bytes(codes, k)
                                  if gaps.size else 0)
    counts = entropy.histogram(symbols, k)
    # The histogram as the container stores it: LEB128-sized integers.
    table = sum(max(1, (int(c).bit_length() + 6) // 7) for c in counts)
    sizes['ans'] += codebook + table + len(entropy.encode(symbols, counts))
    sizes['entropy'] += codebook + order0_bits(symbols, k) / 8
  sizes['lzma'] = len(lzma.compress(b''.join(lzma_input), preset=9 | lzma.PRESET_EXTREME))
  return sizes


def _kernels(tree):
  is_leaf = lambda x: isinstance(x, quantize.SharedWeights) or (
      isinstance(x, dict) and set(x) == {'q', 'scale'})
  return [('/'.join(k.key for k in p), x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
          if quantize.is_kernel(p)]


def main(argv):
  del argv
  workdir = _WORKDIR.value
  restored = trainer_lib.RestoredRun(workdir, trained_run.config_for(workdir, 'export', {}))
  model = formats.to_numpy(restored.variables)
  params = model['params']
  num_kernel = sum(x.size for _, x in _kernels(params))
  num_params = sum(x.size for x in jax.tree.leaves(params))
  tmp = Path(tempfile.mkdtemp())

  def score(encoded_params):
    if not _SCORE.value:
      return None
    weights = quantize.dequantize({'params': encoded_params, 'batch_stats': {}})['params']
    return export.score(restored, {'params': weights, 'batch_stats': model['batch_stats']})[
        'accuracy']

  def file_rows(name, encoded_params):
    """Whole-model files: params as encoded + BN statistics."""
    tree = {'params': encoded_params, 'batch_stats': model['batch_stats']}
    rows = {}
    for coding in container.CODINGS:
      for raw in container.RAW_DTYPES:
        rows[f'{coding}_{raw}_file'] = container.write(tmp / 'c', tree, coding, raw)
    if _SCORE.value:
      for raw in container.RAW_DTYPES:
        container.write(tmp / 'c', tree, 'ans', raw)
        loaded = quantize.dequantize(container.read(tmp / 'c'))
        rows[f'accuracy_{raw}'] = export.score(restored, loaded)['accuracy']
    print(name, rows, flush=True)
    return rows

  results = {'workdir': workdir, 'kernel_params': num_kernel, 'params': num_params,
             'non_kernel_params': int(sum(x.size for x in jax.tree.leaves(model))) - num_kernel,
             'float32_accuracy': score(params), 'shared': [], 'linear': []}
  for bits, sparsity in _SETTINGS:
    start = time.perf_counter()
    encoded = quantize.encode_compressed(params, bits, sparsity)
    sizes = kernel_bytes(_kernels(encoded))
    row = {'bits': bits, 'sparsity': sparsity,
           'kernel_bytes': sizes,
           'kernel_bits_per_param': {k: 8 * v / num_kernel for k, v in sizes.items()},
           **file_rows(f'shared {bits} bits {sparsity:.0%}', encoded),
           'seconds': time.perf_counter() - start}
    print(bits, sparsity, {k: f'{v:,.0f} B {8 * v / num_kernel:.3f} b/p' for k, v in sizes.items()},
          flush=True)
    results['shared'].append(row)
  for bits, sparsity in ((8, 0.0), (4, 0.0), (4, 0.5)):
    pruned = quantize.map_kernels(
        lambda w, s=sparsity: np.where(quantize.prune_mask(w, s), w, 0.0), params)
    encoded = qat.encode(pruned, bits)
    results['linear'].append({'bits': bits, 'sparsity': sparsity,
                              **file_rows(f'int{bits} {sparsity:.0%}', encoded)})
  print(json.dumps(results, indent=1))
  if _OUT.value:
    workdir_lib.write_json(_OUT.value, results)


if __name__ == '__main__':
  app.run(main)
