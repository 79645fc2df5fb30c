"""The one compressed-model file: `--mode=export`'s `compressed` and every compress stage.

Layout: magic, then lzma(u32 header length, JSON header, payload). The header lists
each leaf (`/`-joined path, shape, kind, byte count) and the payload holds its bytes:

  raw     float vectors (biases, BatchNorm): float32, or float16 if asked.
  shared  a weight-shared kernel (`quantize.SharedWeights`): float32 codebook of
          2**bits entries, then its codes as one symbol stream.
  linear  linearly quantized codes (`{'q', 'scale'}`, quantize.py's int8 convention,
          also int4): float32 scale per output channel, then the codes shifted by
          2**(bits-1) to [0, 2**bits) as one symbol stream; bits is 4 when every code
          fits in [-8, 7], else 8.

A symbol stream is coded `ans` (`entropy.encode` under the histogram kept in the
header) or `packed` (a byte per code, two int4 codes per byte). lzma over the whole
body shrinks the header and float vectors; it cannot shrink ANS streams, and adds a
few dozen bytes. `read` gives back the encoded tree exactly (`quantize.dequantize`
turns it into float32 weights). A `packed` file needs no entropy coder (constriction)
to be written or read.
"""

import json
import lzma
import os
import struct
from importlib import metadata
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from squeezenet_jax.compression import quantize
from squeezenet_jax.errors import UserError

MAGIC = b'SQZEC1\n'
FILE = 'model.sqz'  # the file's name in an export's directory
_LENGTH = struct.Struct('<I')
CODINGS = ('ans', 'packed')
RAW_DTYPES = ('float32', 'float16')

Tree = dict[str, Any]


def _is_linear(x: Any) -> bool:
  return isinstance(x, dict) and set(x) == {'q', 'scale'}


def _is_encoded(x: Any) -> bool:
  return _is_linear(x) or isinstance(x, quantize.SharedWeights)


def pack_int4(codes: np.ndarray) -> np.ndarray:
  """Flat uint8, two codes in [-8, 7] per byte (low nibble first)."""
  nibbles = (np.asarray(codes, np.int8).ravel() & 0x0F).astype(np.uint8)
  if nibbles.size % 2:
    nibbles = np.append(nibbles, np.uint8(0))
  return nibbles[0::2] | (nibbles[1::2] << 4)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
  """The `count` int8 codes of `pack_int4`, sign-extended from their nibbles."""
  packed = np.asarray(packed, np.uint8)
  nibbles = np.stack([packed & 0x0F, packed >> 4], axis=-1).ravel()[:count]
  return ((nibbles.astype(np.int8) ^ 8) - 8).astype(np.int8)


def _entropy():
  """The ANS coder, imported only for `ans` streams (constriction is optional)."""
  from squeezenet_jax.compression import entropy  # pylint: disable=g-import-not-at-top
  return entropy


def _stream(symbols: np.ndarray, bits: int, coding: str) -> tuple[dict[str, Any], bytes]:
  if coding == 'ans':
    entropy = _entropy()
    counts = entropy.histogram(symbols, 2**bits)
    return {'coding': 'ans', 'counts': counts.tolist()}, entropy.encode(symbols, counts)
  if bits == 4:
    return {'coding': 'packed'}, pack_int4(np.asarray(symbols, np.int16) - 8).tobytes()
  return {'coding': 'packed'}, np.asarray(symbols, np.uint8).tobytes()


def _unstream(entry: dict[str, Any], data: bytes, size: int) -> np.ndarray:
  if entry['coding'] == 'ans':
    return _entropy().decode(data, np.asarray(entry['counts']), size)
  if entry['bits'] == 4:
    return unpack_int4(np.frombuffer(data, np.uint8), size).astype(np.int32) + 8
  return np.frombuffer(data, np.uint8).astype(np.int32)


def _linear_bits(q: np.ndarray) -> int:
  return 4 if q.size == 0 or (q.min() >= -8 and q.max() <= 7) else 8


def _entry(leaf: Any, coding: str, raw_dtype: str) -> tuple[dict[str, Any], bytes]:
  if isinstance(leaf, quantize.SharedWeights):
    bits = (leaf.codebook.size - 1).bit_length()
    meta, stream = _stream(leaf.indices, bits, coding)
    return ({'kind': 'shared', 'shape': list(leaf.shape), 'bits': bits, **meta},
            leaf.codebook.astype('<f4').tobytes() + stream)
  if _is_linear(leaf):
    q, scale = np.asarray(leaf['q'], np.int32), np.asarray(leaf['scale'], '<f4').ravel()
    bits = _linear_bits(q)
    meta, stream = _stream(q.ravel() + 2**(bits - 1), bits, coding)
    return ({'kind': 'linear', 'shape': list(q.shape), 'bits': bits,
             'channels': scale.size, **meta}, scale.tobytes() + stream)
  leaf = np.asarray(leaf, np.float32)
  return ({'kind': 'raw', 'shape': list(leaf.shape), 'dtype': raw_dtype},
          leaf.astype(np.dtype(raw_dtype).newbyteorder('<')).tobytes())


def write(path: str | os.PathLike, tree: Tree, coding: str = 'ans',
          raw_dtype: str = 'float32') -> int:
  """Writes an encoded tree (float, shared and linear leaves); returns the file's bytes."""
  if coding not in CODINGS or raw_dtype not in RAW_DTYPES:  # validation checked the config's
    raise ValueError(f'coding={coding!r}, raw_dtype={raw_dtype!r}: not in {CODINGS}, {RAW_DTYPES}')
  leaves, payload = [], []
  for keys, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_encoded)[0]:
    entry, data = _entry(leaf, coding, raw_dtype)
    leaves.append({'name': '/'.join(str(getattr(k, 'key', k)) for k in keys), **entry,
                   'nbytes': len(data)})
    payload.append(data)
  # The ANS models are constriction's quantisation of the histograms: its version.
  header = ({'constriction': metadata.version('constriction')} if coding == 'ans' else {})
  header['leaves'] = leaves
  header_bytes = json.dumps(header).encode()
  body = _LENGTH.pack(len(header_bytes)) + header_bytes + b''.join(payload)
  data = MAGIC + lzma.compress(body, preset=9 | lzma.PRESET_EXTREME)
  with open(path, 'wb') as f:
    f.write(data)
  return len(data)


def _leaf(entry: dict[str, Any], data: bytes) -> Any:
  shape = tuple(entry['shape'])
  size = int(np.prod(shape))
  if entry['kind'] == 'raw':
    dtype = np.dtype(entry['dtype']).newbyteorder('<')
    return np.frombuffer(data, dtype).astype(np.float32).reshape(shape)
  if entry['kind'] == 'shared':
    codes = 2**entry['bits']
    codebook = np.frombuffer(data[:4 * codes], '<f4').astype(np.float32)
    indices = _unstream(entry, data[4 * codes:], size).astype(np.uint8)
    return quantize.SharedWeights(codebook=codebook, indices=indices, shape=shape)
  channels = entry['channels']
  scale = np.frombuffer(data[:4 * channels], '<f4').astype(np.float32)
  q = _unstream(entry, data[4 * channels:], size) - 2**(entry['bits'] - 1)
  return {'q': q.astype(np.int8).reshape(shape), 'scale': scale}


def read(path: str | os.PathLike) -> Tree:
  """The encoded tree of a file `write` wrote; a file of another kind, or a truncated
  or damaged one, is a UserError naming it."""
  what = 'compressed SqueezeNet file'
  with open(path, 'rb') as f:
    raw = f.read()
  if not raw.startswith(MAGIC):
    raise UserError(f'{path} is not a {what} ({MAGIC!r} header)')
  try:
    body = lzma.decompress(raw[len(MAGIC):])
    (header_len,) = _LENGTH.unpack_from(body)
    offset = _LENGTH.size + header_len
    leaves = {}
    for entry in json.loads(body[_LENGTH.size:offset])['leaves']:
      leaves[tuple(entry['name'].split('/'))] = _leaf(
          entry, body[offset:offset + entry['nbytes']])
      offset += entry['nbytes']
  except (lzma.LZMAError, struct.error, ValueError, KeyError, TypeError, IndexError) as e:
    raise UserError(f'{path} is a damaged {what}: {type(e).__name__}: {e}') from None
  if offset != len(body):
    raise UserError(f'{path} is a damaged {what}: {len(body) - offset} bytes unaccounted for')
  return traverse_util.unflatten_dict(leaves)
