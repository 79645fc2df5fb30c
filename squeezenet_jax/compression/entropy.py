"""Entropy coding of integer symbol streams (codebook indices, quantized codes).

Each stream is coded with an asymmetric numeral system (constriction's `AnsCoder`)
under its own static model: the stream's symbol histogram, stored beside it. This
comes close to the streams' order-0 entropy (tables and codebooks included); the
comparison with Huffman, the paper's relative indices and lzma is
`benchmarks/compression_coders.py`, its results in `benchmarks/results/`. Huffman
spends at least a bit per symbol and rounds code lengths up; lzma of one byte per
index models the distribution less well. One histogram per kernel: conditioning on
the output channel would pay for thousands of per-channel tables.

Pruned weights need no position list here: they are code 0 in a dense stream, so
their cost is the binary entropy of the sparsity, the bound that relative indices
approach.
"""

import constriction
import numpy as np

_WORD = np.dtype('<u4')


def _model(counts: np.ndarray):
  # perfect=False: constriction's fast, deterministic quantisation of the
  # probabilities; every symbol in the alphabet stays encodable.
  return constriction.stream.model.Categorical(np.asarray(counts, np.float64), perfect=False)


def histogram(symbols: np.ndarray, alphabet: int) -> np.ndarray:
  """The model of a stream: how often each of `alphabet` symbols occurs."""
  symbols = np.asarray(symbols).ravel()
  if symbols.size and not 0 <= symbols.min() <= symbols.max() < alphabet:
    raise ValueError(f'symbols span [{symbols.min()}, {symbols.max()}], outside '
                     f'[0, {alphabet})')
  return np.bincount(symbols, minlength=alphabet).astype(np.int64)


def encode(symbols: np.ndarray, counts: np.ndarray) -> bytes:
  """The ANS code of `symbols` (ints in [0, len(counts))) under `counts`."""
  symbols = np.asarray(symbols, np.int32).ravel()
  if not symbols.size:
    return b''
  coder = constriction.stream.stack.AnsCoder()
  coder.encode_reverse(symbols, _model(counts))
  return coder.get_compressed().astype(_WORD).tobytes()


def decode(data: bytes, counts: np.ndarray, size: int) -> np.ndarray:
  """The `size` symbols that `encode` coded into `data` (int32)."""
  if not size:
    return np.zeros(0, np.int32)
  coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, _WORD).astype(np.uint32))
  return np.asarray(coder.decode(_model(counts), size), np.int32)
