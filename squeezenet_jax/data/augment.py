"""On-device augmentation and normalisation: pure JAX, run inside the compiled epoch.

The dataset stays on device as uint8, so images are augmented per batch there rather
than on the host.
"""

import jax
from jax import lax
import jax.numpy as jnp

# Per-channel statistics of the CIFAR-10 training images, on the 0..255 scale: the
# defaults of `data.mean`/`data.std`.
CIFAR10_MEAN = (0.4914 * 255, 0.4822 * 255, 0.4465 * 255)
CIFAR10_STD = (0.2470 * 255, 0.2435 * 255, 0.2616 * 255)


def statistics(data_config) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) per channel from `data.mean`/`data.std`."""
  return tuple(data_config.mean), tuple(data_config.std)


def random_crop_flip(key: jax.Array, images: jax.Array, *, padding: int = 4,
                     flip: bool = True, mirrored: jax.Array | None = None) -> jax.Array:
  """Random HxW crops of the zero-padded images, each mirrored with probability 1/2.

  Args:
    key: PRNG key; the same key gives the same crops and flips.
    images: [B, H, W, C] batch (uint8 or any dtype; returned unchanged in dtype).
    padding: zero pixels added on each side before cropping; 0 disables cropping.
    flip: whether to mirror a random half of the images left-right.
    mirrored: with `flip`, which images to mirror ([B] bool, e.g. `alternating_flips`)
      instead of a random half; the crops are the same either way.

  Returns:
    The augmented [B, H, W, C] batch.
  """
  crop_key, flip_key = jax.random.split(key)
  if padding:
    images = _random_crop(crop_key, images, padding)
  if flip:
    if mirrored is None:
      mirrored = jax.random.bernoulli(flip_key, 0.5, (images.shape[0], 1, 1, 1))
    else:
      mirrored = mirrored.reshape(-1, 1, 1, 1)
    images = jnp.where(mirrored, flip_horizontal(images), images)
  return images


def alternating_flips(key: jax.Array, indices: jax.Array, epoch: jax.Array) -> jax.Array:
  """airbench's alternating flip: image i is mirrored in epoch e iff b_i xor (e odd),
  b_i a fair coin per image drawn from `key`, so each image is seen mirrored in every
  other epoch (a random half in the first) rather than by chance."""
  first = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i)))(indices)
  return first ^ (epoch % 2 == 1)


def _random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
  batch, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  return jax.vmap(crop)(padded, offsets)


def flip_horizontal(images: jax.Array) -> jax.Array:
  """Mirrors a [B, H, W, C] batch left-right (also for test-time augmentation)."""
  return images[:, :, ::-1, :]


def tta_views(images: jax.Array, translate: int = 0) -> list[tuple[float, jax.Array]]:
  """(weight, batch) views whose weighted logits make test-time augmentation.

  The images and their mirrors; with `translate`, airbench's multi-crop: the mirrored
  pair at half weight, plus both shifted `translate` pixels up-left and down-right
  (edges reflected) at a quarter each.
  """
  def mirrored_pair(x):
    return [x, flip_horizontal(x)]

  if not translate:
    return [(0.5, view) for view in mirrored_pair(images)]
  n = translate
  padded = jnp.pad(images, ((0, 0), (n, n), (n, n), (0, 0)), mode='reflect')
  height, width = images.shape[1:3]
  up_left = padded[:, :height, :width]
  down_right = padded[:, 2 * n:, 2 * n:]
  return ([(0.25, view) for view in mirrored_pair(images)]
          + [(0.125, view) for view in mirrored_pair(up_left) + mirrored_pair(down_right)])


def normalize(images: jax.Array, dtype=jnp.float32, mean=CIFAR10_MEAN,
              std=CIFAR10_STD) -> jax.Array:
  """uint8 images to zero-mean, unit-variance per channel `dtype` values."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return ((images.astype(jnp.float32) - mean) / std).astype(dtype)
