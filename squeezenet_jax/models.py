"""SqueezeNet 1.0/1.1 (Iandola et al. 2016) and the AlexNet baseline in Flax NNX.

Every model is called as `model(x, train=..., rngs=...)` on float NHWC images and
returns float32 logits. Train/eval behaviour comes from the call's `train` argument,
never from module mode flags, so the trainer can call models functionally through
nnx.split/nnx.merge inside jax.jit.

Every conv/dense/BN layer reports what it computed to an active `recording()` block,
which is how `accounting` gets per-layer shapes from a shape-only trace.
"""

import contextlib
import contextvars
import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
from jax import lax
import ml_collections

from squeezenet_jax.errors import UserError

VERSIONS = ('1.0', '1.1')
STEMS = ('imagenet', 'cifar')
BYPASSES = ('none', 'simple', 'complex')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# He/Kaiming normal with fan_in: keeps the forward activation scale through ReLU
# layers, which matters in the variants without batch norm.
HE_NORMAL = nnx.initializers.variance_scaling(2.0, 'fan_in', 'normal')
# torchvision initialises SqueezeNet's final classifier conv with N(0, 0.01).
CLASSIFIER_INIT = nnx.initializers.normal(0.01)
# torch's BN momentum 0.1: nnx's default 0.99 tracks statistics too slowly for
# short CIFAR runs.
BN_MOMENTUM = 0.9

# (version, stem) -> conv1 (filters, kernel, stride, padding).
_SQUEEZENET_STEMS = {
    ('1.0', 'imagenet'): (96, 7, 2, 'VALID'),
    ('1.1', 'imagenet'): (64, 3, 2, 'VALID'),
    ('1.0', 'cifar'): (96, 3, 1, 'SAME'),
    ('1.1', 'cifar'): (64, 3, 1, 'SAME'),
}
# Fires followed by a 3x3/2 max pool (conv1 always is).
_POOL_AFTER = {'1.0': (4, 8), '1.1': (3, 5)}
# Fires whose in/out channels match in the paper's layout (simple bypass, section 6).
_SIMPLE_BYPASS_FIRES = (3, 5, 7, 9)
_FIRES = tuple(range(2, 10))


# ----------------------------------------------------------------------------
# Layer recording for accounting.


@dataclasses.dataclass(frozen=True)
class LayerRecord:
  """One executed layer as seen during a trace: enough to derive params and MACs."""

  name: str
  kind: str  # conv | dense | bn
  kernel: int | None  # None for dense and bn
  stride: int | None
  in_channels: int
  filters: int
  out_size: tuple[int, int] | None  # None for dense
  bias: bool


_RECORDER: contextvars.ContextVar[list[LayerRecord] | None] = (
    contextvars.ContextVar('squeezenet_jax_layer_recorder', default=None))


@contextlib.contextmanager
def recording() -> Iterator[list[LayerRecord]]:
  """Collects a LayerRecord per layer executed (i.e. traced) inside the block.

  The model must actually be traced inside the block: a cached jit trace runs no
  Python, so use a fresh `nnx.eval_shape(lambda ...)`.
  """
  layers = []
  token = _RECORDER.set(layers)
  try:
    yield layers
  finally:
    _RECORDER.reset(token)


def _record(**fields) -> None:
  layers = _RECORDER.get()
  if layers is not None:
    layers.append(LayerRecord(**fields))


# ----------------------------------------------------------------------------
# Building blocks.


class ConvUnit(nnx.Module):
  """Conv [+ BN] [+ ReLU]; with batch norm the conv has no bias (BN's shift replaces it)."""

  def __init__(self, name: str, in_channels: int, filters: int, kernel: int, *,
               stride: int = 1, padding: Any = 'SAME', batch_norm: bool = False,
               relu: bool = True, kernel_init=HE_NORMAL, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.name = name
    self.kernel_size = kernel
    self.stride = stride
    self.relu = relu
    self.conv = nnx.Conv(
        in_channels, filters, (kernel, kernel), strides=stride, padding=padding,
        use_bias=not batch_norm, kernel_init=kernel_init, dtype=dtype,
        param_dtype=jnp.float32, rngs=rngs)
    self.bn = nnx.BatchNorm(
        filters, momentum=BN_MOMENTUM, dtype=dtype, param_dtype=jnp.float32,
        rngs=rngs) if batch_norm else None

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    y = self.conv(x)
    filters, out_size = y.shape[-1], tuple(y.shape[1:3])
    _record(name=self.name, kind='conv', kernel=self.kernel_size,
            stride=self.stride, in_channels=x.shape[-1], filters=filters,
            out_size=out_size, bias=self.bn is None)
    if self.bn is not None:
      y = self.bn(y, use_running_average=not train)
      _record(name=f'{self.name}/bn', kind='bn', kernel=None, stride=None,
              in_channels=filters, filters=filters, out_size=out_size, bias=True)
    return nnx.relu(y) if self.relu else y


class DenseUnit(nnx.Module):
  """Dense [+ ReLU], recorded for accounting."""

  def __init__(self, name: str, in_features: int, features: int, *,
               relu: bool = True, kernel_init=HE_NORMAL, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.name = name
    self.relu = relu
    self.dense = nnx.Linear(in_features, features, kernel_init=kernel_init,
                            dtype=dtype, param_dtype=jnp.float32, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.dense(x)
    _record(name=self.name, kind='dense', kernel=None, stride=None,
            in_channels=x.shape[-1], filters=y.shape[-1], out_size=None, bias=True)
    return nnx.relu(y) if self.relu else y


def _pool_padding(size: int, window: int, stride: int) -> int:
  """Right/bottom padding that gives torch's ceil_mode output size.

  torch: out = ceil((size - window) / stride) + 1, minus one if the last window
  would start outside the input.
  """
  out = -(-(size - window) // stride) + 1
  if (out - 1) * stride >= size:
    out -= 1
  return (out - 1) * stride + window - size


def max_pool(x: jax.Array, *, ceil_mode: bool, window: int = 3, stride: int = 2,
             train: bool = False) -> jax.Array:
  """3x3/2 max pool; ceil_mode pads with -inf (flax's pool init) like torch's ceil_mode=True.

  Training on CPU takes `window_max` (the same values, a cheaper gradient); everything
  else, exports included, takes `nnx.max_pool`.
  """
  height, width = x.shape[1:3]
  if min(height, width) < window:
    raise UserError(
        f'data.image_size is too small for this model: a {height}x{width} feature '
        f'map reached a {window}x{window} max pool')
  pads = [_pool_padding(n, window, stride) if ceil_mode else 0 for n in (height, width)]
  if any(pads):
    # ceil mode as an explicit -inf pad (what the pool's own padding would add) and a
    # VALID pool: exporters (jax2onnx) convert nnx.max_pool only with string padding.
    x = jnp.pad(x, ((0, 0), (0, pads[0]), (0, pads[1]), (0, 0)), constant_values=-jnp.inf)
  if train and jax.default_backend() == 'cpu':
    return window_max(x, window, stride)
  return nnx.max_pool(x, window_shape=(window, window), strides=(stride, stride),
                      padding='VALID')


def _window_slices(x: jax.Array, window: int, stride: int):
  """(row, column, x[:, row::stride, column::stride]) for each offset in the window."""
  n, h, w, c = x.shape
  oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
  for i in range(window):
    for j in range(window):
      yield i, j, lax.slice(x, (0, i, j, 0),
                            (n, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c),
                            (1, stride, stride, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def window_max(x: jax.Array, window: int, stride: int) -> jax.Array:
  """A VALID max pool (NHWC) as the maximum of the window's strided slices.

  Its gradient goes, as `lax.reduce_window`'s does, to the first maximum of each
  window in row-major order, but through elementwise selects and shifts: on XLA:CPU
  reduce_window's gradient (select-and-scatter over index pairs) costs several times
  the forward pass.
  """
  return functools.reduce(jnp.maximum, (s for *_, s in _window_slices(x, window, stride)))


def _window_max_fwd(x, window, stride):
  y = window_max(x, window, stride)
  return y, (x, y)


def _window_max_bwd(window, stride, residuals, g):
  """Each window's cotangent to its first maximum, gathered per stride phase.

  Input row r = stride * o + i (window offset i) lies in phase r % stride at o + i //
  stride: each phase is a sum of shifted output-sized arrays, and the phases
  interleave into the input's shape, all elementwise (no scatter, no strided pad).
  """
  x, y = residuals
  n, h, w, c = x.shape
  oh, ow = y.shape[1:3]
  ph, pw = -(-h // stride), -(-w // stride)  # rows and columns of each phase
  zero = jnp.zeros((), g.dtype)
  unclaimed = jnp.ones(y.shape, bool)  # windows whose first maximum is not found yet
  phases = {(pi, pj): jnp.zeros((n, ph, pw, c), g.dtype)
            for pi in range(stride) for pj in range(stride)}
  for i, j, s in _window_slices(x, window, stride):
    first = unclaimed & (s == y)
    unclaimed = unclaimed & ~first
    di, dj = i // stride, j // stride
    if ph - oh - di < 0 or pw - ow - dj < 0:
      raise ValueError(f'window_max takes windows of at most 2 * stride, not {window}')
    phases[i % stride, j % stride] += lax.pad(jnp.where(first, g, zero), zero, [
        (0, 0, 0), (di, ph - oh - di, 0), (dj, pw - ow - dj, 0), (0, 0, 0)])
  rows = [jnp.stack([phases[pi, pj] for pj in range(stride)], axis=3)
          for pi in range(stride)]  # each (n, ph, pw, stride, c)
  dx = jnp.stack(rows, axis=2).reshape(n, ph * stride, pw * stride, c)
  return (dx[:, :h, :w],)


window_max.defvjp(_window_max_fwd, _window_max_bwd)


def _bins(size: int, out: int) -> list[tuple[int, int]]:
  return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg_pool(x: jax.Array, out: int) -> jax.Array:
  """torch.nn.AdaptiveAvgPool2d((out, out)): bin i spans [floor(i*n/out), ceil((i+1)*n/out))."""
  if x.shape[1:3] == (out, out):
    return x
  rows = [
      jnp.stack([x[:, r0:r1, c0:c1].mean(axis=(1, 2))
                 for c0, c1 in _bins(x.shape[2], out)], axis=1)
      for r0, r1 in _bins(x.shape[1], out)
  ]
  return jnp.stack(rows, axis=1)


def _dropout_keys(rngs, count: int) -> tuple[Any, ...]:
  """One key per dropout layer: reusing one raw key would repeat the same mask."""
  if rngs is None:
    return (None,) * count  # nnx.Dropout itself reports the missing rngs.
  if isinstance(rngs, nnx.Rngs):
    rngs = rngs.dropout  # falls back to the 'default' stream
  if isinstance(rngs, nnx.RngStream):
    return tuple(rngs() for _ in range(count))
  return tuple(jax.random.split(rngs, count))


def _dropout(layer: nnx.Dropout, x: jax.Array, key, train: bool) -> jax.Array:
  """Dropout in training only; at inference it is not traced at all, so exports hold none."""
  return layer(x, deterministic=False, rngs=key) if train else x


# ----------------------------------------------------------------------------
# SqueezeNet.


def _round(x: float) -> int:
  return math.floor(x + 0.5)


def fire_widths(model_config: ml_collections.ConfigDict) -> list[tuple[int, int, int]]:
  """(squeeze, expand1x1, expand3x3) of fire2..fire9 from the paper's metaparameters.

  Section 5: e_i = base_e + incr_e * floor(i / freq), expand3x3 = pct3x3 * e_i,
  squeeze = squeeze_ratio * e_i. Rounded to the nearest int, keeping every conv at
  least one filter wide so extreme pct3x3 values still build.
  """
  c = model_config
  if c.freq < 1 or not 0 < c.pct3x3 < 1 or c.squeeze_ratio <= 0:
    raise UserError(
        f'bad metaparameters: need model.freq >= 1, 0 < model.pct3x3 < 1, '
        f'model.squeeze_ratio > 0 (got {c.freq}, {c.pct3x3}, {c.squeeze_ratio})')
  widths = []
  for i in range(len(_FIRES)):
    expand = c.base_e + c.incr_e * (i // c.freq)
    if expand < 2:
      raise UserError(f'fire{i + 2} would have {expand} expand filters (< 2); '
                      'raise model.base_e or model.incr_e')
    expand3x3 = min(max(_round(c.pct3x3 * expand), 1), expand - 1)
    squeeze = max(_round(c.squeeze_ratio * expand), 1)
    widths.append((squeeze, expand - expand3x3, expand3x3))
  return widths


def _bypass_kind(bypass: str, fire: int, in_channels: int,
                 out_channels: int) -> str | None:
  """'identity', 'conv' or None for one fire (paper section 6).

  simple: identity around fire3/5/7/9, which must keep their channel count.
  complex: every fire, identity where channels match and a 1x1 conv where not.
  """
  if bypass == 'none' or (bypass == 'simple' and fire not in _SIMPLE_BYPASS_FIRES):
    return None
  if in_channels == out_channels:
    return 'identity'
  if bypass == 'complex':
    return 'conv'
  raise UserError(
      f'model.bypass=simple needs fire{fire} to keep its channels, but these '
      f'metaparameters give {in_channels} -> {out_channels}; use model.bypass=complex')


class Fire(nnx.Module):
  """Squeeze 1x1 -> parallel expand 1x1 and 3x3, concatenated (1x1 first, as torchvision).

  `bypass` adds the input back ('identity') or through a 1x1 conv with bias ('conv').
  """

  def __init__(self, in_channels: int, squeeze: int, expand1x1: int,
               expand3x3: int, *, bypass: str | None = None,
               batch_norm: bool = False, name: str = 'fire',
               dtype=jnp.float32, rngs: nnx.Rngs):
    unit = functools.partial(ConvUnit, batch_norm=batch_norm, dtype=dtype,
                             rngs=rngs)
    self.squeeze1x1 = unit(f'{name}/squeeze1x1', in_channels, squeeze, 1)
    self.expand1x1 = unit(f'{name}/expand1x1', squeeze, expand1x1, 1)
    self.expand3x3 = unit(f'{name}/expand3x3', squeeze, expand3x3, 3)
    self.identity = bypass == 'identity'
    # With batch norm the 1x1 bypass is normalised too (as ResNet's projection
    # shortcuts): an unnormalised branch added to normalised ones blew the loss up.
    self.bypass = ConvUnit(
        f'{name}/bypass', in_channels, expand1x1 + expand3x3, 1, relu=False,
        batch_norm=batch_norm, dtype=dtype, rngs=rngs) if bypass == 'conv' else None

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    s = self.squeeze1x1(x, train=train)
    y = jnp.concatenate(
        [self.expand1x1(s, train=train), self.expand3x3(s, train=train)], axis=-1)
    if self.identity:
      y = y + x
    elif self.bypass is not None:
      y = y + self.bypass(x, train=train)
    return y


class SqueezeNet(nnx.Module):
  """SqueezeNet 1.0/1.1 as in torchvision, with the paper's bypass variants.

  Stems: 'imagenet' is the original (v1.0 96 7x7/2, v1.1 64 3x3/2, VALID), giving
  224 -> 109 -> 54 -> 27 -> 13 (v1.0) or 224 -> 111 -> 55 -> 27 -> 13 (v1.1).
  'cifar' makes conv1 3x3/1 SAME with the same filters; at 32x32 conv1 keeps 32x32
  and the three ceil-mode pools give 16, 8 and a final 4x4 map for conv10.
  `model.stem_pool=False` drops the pool after conv1 (same parameters, every fire on a
  map twice as wide: 32, 16 and 8x8 at conv10 on CIFAR, about 4x the MACs).
  The classifier is dropout -> 1x1 conv10 (no BN, with bias) -> ReLU -> global mean;
  `model.classifier_relu=False` drops that ReLU (same parameters): with it, a class whose
  conv10 outputs are all negative has logit 0 and no gradient, which can stall training.
  """

  def __init__(self, model_config: ml_collections.ConfigDict, *,
               dtype=jnp.float32, rngs: nnx.Rngs):
    c = model_config
    version, stem, bypass = c.version, c.stem, c.bypass
    filters, kernel, stride, padding = _SQUEEZENET_STEMS[version, stem]
    self.conv1 = ConvUnit('conv1', 3, filters, kernel, stride=stride,
                          padding=padding, batch_norm=c.batch_norm, dtype=dtype,
                          rngs=rngs)
    self.pool_after = _POOL_AFTER[version]
    self.stem_pool = c.stem_pool
    channels = filters
    for fire, widths in zip(_FIRES, fire_widths(c)):
      out_channels = widths[1] + widths[2]
      setattr(self, f'fire{fire}', Fire(
          channels, *widths,
          bypass=_bypass_kind(bypass, fire, channels, out_channels),
          batch_norm=c.batch_norm, name=f'fire{fire}', dtype=dtype, rngs=rngs))
      channels = out_channels
    self.dropout = nnx.Dropout(c.dropout)
    self.conv10 = ConvUnit('classifier/conv10', channels, c.num_classes, 1,
                           relu=c.classifier_relu, kernel_init=CLASSIFIER_INIT, dtype=dtype,
                           rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False,
               rngs=None) -> jax.Array:
    x = self.conv1(x, train=train)
    if self.stem_pool:
      x = max_pool(x, ceil_mode=True, train=train)
    for fire in _FIRES:
      x = getattr(self, f'fire{fire}')(x, train=train)
      if fire in self.pool_after:
        x = max_pool(x, ceil_mode=True, train=train)
    (key,) = _dropout_keys(rngs, 1) if train else (None,)
    x = _dropout(self.dropout, x, key, train)
    x = self.conv10(x, train=train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


# ----------------------------------------------------------------------------
# AlexNet.


class AlexNet(nnx.Module):
  """AlexNet, the paper's size baseline.

  'imagenet' stem: torchvision's alexnet exactly (61,100,840 params at 1000 classes):
  conv 64 11x11/4 pad 2, pool, conv 192 5x5, pool, conv 384/256/256 3x3, pool
  (3x3/2, floor), adaptive average pool to 6x6, then dropout/fc 4096/dropout/fc
  4096/fc classes.
  'cifar' stem: the same widths for 32x32 inputs: conv1 becomes 64 3x3/1 SAME (an
  11x11/4 conv would leave 8x8 after one layer) and the pools are ceil-mode, giving
  32 -> 16 -> 8 -> 4, so fc6 sees 4x4x256 = 4096 features; 36,051,786 params at
  10 classes (~50x SqueezeNet 1.1's 727,626, as in the paper's comparison).
  With batch_norm, BN follows each conv (convs then have no bias); fcs have none.
  """

  def __init__(self, model_config: ml_collections.ConfigDict, *,
               dtype=jnp.float32, rngs: nnx.Rngs):
    c = model_config
    imagenet = c.stem == 'imagenet'
    unit = functools.partial(ConvUnit, batch_norm=c.batch_norm, dtype=dtype,
                             rngs=rngs)
    if imagenet:
      self.conv1 = unit('conv1', 3, 64, 11, stride=4, padding=((2, 2), (2, 2)))
    else:
      self.conv1 = unit('conv1', 3, 64, 3)
    self.conv2 = unit('conv2', 64, 192, 5)
    self.conv3 = unit('conv3', 192, 384, 3)
    self.conv4 = unit('conv4', 384, 256, 3)
    self.conv5 = unit('conv5', 256, 256, 3)
    self.ceil_mode = not imagenet
    self.pooled_size = 6 if imagenet else 4
    dense = functools.partial(DenseUnit, dtype=dtype, rngs=rngs)
    self.fc6 = dense('fc6', 256 * self.pooled_size**2, 4096)
    self.fc7 = dense('fc7', 4096, 4096)
    self.fc8 = dense('fc8', 4096, c.num_classes, relu=False,
                     kernel_init=CLASSIFIER_INIT)
    self.dropout = nnx.Dropout(c.dropout)

  def __call__(self, x: jax.Array, *, train: bool = False,
               rngs=None) -> jax.Array:
    pool = functools.partial(max_pool, ceil_mode=self.ceil_mode, train=train)
    x = pool(self.conv1(x, train=train))
    x = pool(self.conv2(x, train=train))
    for conv in (self.conv3, self.conv4, self.conv5):
      x = conv(x, train=train)
    x = adaptive_avg_pool(pool(x), self.pooled_size)
    x = x.reshape(x.shape[0], -1)
    keys = _dropout_keys(rngs, 2) if train else (None, None)
    x = self.fc6(_dropout(self.dropout, x, keys[0], train))
    x = self.fc7(_dropout(self.dropout, x, keys[1], train))
    return self.fc8(x).astype(jnp.float32)


MODELS = {'squeezenet': SqueezeNet, 'alexnet': AlexNet}  # model.name -> class


def compute_dtype(config: ml_collections.ConfigDict):
  """config.dtype as a jnp dtype: what activations compute in (params stay float32)."""
  return DTYPES[config.dtype]


def create_model(config: ml_collections.ConfigDict, *,
                 rngs: nnx.Rngs) -> nnx.Module:
  """Builds the model named by config.model.name, computing in config.dtype."""
  model_cls = MODELS[config.model.name]
  return model_cls(config.model, dtype=compute_dtype(config), rngs=rngs)


def abstract_model(config: ml_collections.ConfigDict) -> nnx.Module:
  """The model with shape-only variables: allocates nothing (accounting, restore targets)."""
  return nnx.eval_shape(lambda: create_model(config, rngs=nnx.Rngs(0)))
