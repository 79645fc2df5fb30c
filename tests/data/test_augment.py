"""Tests for augment: crops are shifted copies, flips mirror, both vary, all jit-able."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from squeezenet_jax.data import augment

_SIZE = 32
_PAD = 4


def _coordinate_images(batch):
  """Channel 0 = row + 1, channel 1 = column + 1 (zero only in the padding)."""
  rows, cols = np.meshgrid(np.arange(_SIZE) + 1, np.arange(_SIZE) + 1, indexing='ij')
  image = np.stack([rows, cols, np.ones_like(rows)], -1).astype(np.uint8)
  return np.broadcast_to(image, (batch, _SIZE, _SIZE, 3)).copy()


def _crop_offsets(out):
  """Each unflipped crop's (row, column) offset in the padded image, from its center pixel.

  A crop at offset o shows image coordinate o - PAD + i (stored as that + 1) at position i.
  """
  center = out[:, _SIZE // 2, _SIZE // 2, :2].astype(int)
  offsets = center - 1 + _PAD - _SIZE // 2
  return offsets[:, 0], offsets[:, 1]


def test_keeps_shape_and_dtype():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, _SIZE, _SIZE, 3)),
                       jnp.uint8)
  out = augment.random_crop_flip(jax.random.key(0), images)
  assert out.shape == images.shape and out.dtype == jnp.uint8


def test_no_padding_no_flip_is_identity():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, _SIZE, _SIZE, 3)),
                       jnp.uint8)
  out = augment.random_crop_flip(jax.random.key(3), images, padding=0, flip=False)
  np.testing.assert_array_equal(out, images)


def test_crop_is_a_shifted_window_of_the_padded_image():
  images = _coordinate_images(64)
  out = np.asarray(augment.random_crop_flip(jax.random.key(1), jnp.asarray(images),
                                            padding=_PAD, flip=False))
  rows, cols = _crop_offsets(out)
  padded = np.pad(images, ((0, 0), (_PAD, _PAD), (_PAD, _PAD), (0, 0)))
  for i, (row, col) in enumerate(zip(rows, cols)):
    assert 0 <= row <= 2 * _PAD and 0 <= col <= 2 * _PAD
    np.testing.assert_array_equal(out[i], padded[i, row:row + _SIZE, col:col + _SIZE])
  assert len(set(zip(rows, cols))) > 20  # offsets vary across the batch


def test_flip_mirrors_about_half_of_the_images():
  images = _coordinate_images(64)
  out = np.asarray(augment.random_crop_flip(jax.random.key(2), jnp.asarray(images),
                                            padding=0, flip=True))
  flipped = out[:, 0, 0, 1] == _SIZE
  np.testing.assert_array_equal(out[flipped], images[flipped][:, :, ::-1])
  np.testing.assert_array_equal(out[~flipped], images[~flipped])
  assert 16 <= flipped.sum() <= 48


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
  key, indices = jax.random.key(5), jnp.arange(200)
  first, second, third = (np.asarray(augment.alternating_flips(key, indices, e))
                          for e in (0, 1, 2))
  np.testing.assert_array_equal(second, ~first)
  np.testing.assert_array_equal(third, first)
  assert 70 <= first.sum() <= 130  # a random half in the first epoch
  # An image's mirror depends on its index, not on its place in the batch.
  shuffled = np.asarray(augment.alternating_flips(key, indices[::-1], 0))
  np.testing.assert_array_equal(shuffled, first[::-1])


def test_given_mirrors_replace_the_random_ones_and_keep_the_crops():
  images = jnp.asarray(_coordinate_images(16))
  mirrored = jnp.arange(16) % 2 == 0
  out = np.asarray(augment.random_crop_flip(jax.random.key(4), images, mirrored=mirrored))
  unflipped = np.asarray(augment.random_crop_flip(jax.random.key(4), images, flip=False))
  np.testing.assert_array_equal(out[1::2], unflipped[1::2])
  np.testing.assert_array_equal(out[::2], unflipped[::2][:, :, ::-1])


def test_different_keys_differ_and_same_key_repeats():
  images = jnp.asarray(_coordinate_images(16))
  first = augment.random_crop_flip(jax.random.key(0), images)
  np.testing.assert_array_equal(augment.random_crop_flip(jax.random.key(0), images), first)
  assert not np.array_equal(augment.random_crop_flip(jax.random.key(1), images), first)


def test_jit_matches_eager():
  images = jnp.asarray(_coordinate_images(16))
  jitted = jax.jit(functools.partial(augment.random_crop_flip, padding=_PAD, flip=True))
  np.testing.assert_array_equal(jitted(jax.random.key(5), images),
                                augment.random_crop_flip(jax.random.key(5), images))


def test_flip_horizontal_mirrors_columns():
  images = jnp.asarray(_coordinate_images(2))
  np.testing.assert_array_equal(augment.flip_horizontal(images), images[:, :, ::-1])
  np.testing.assert_array_equal(augment.flip_horizontal(augment.flip_horizontal(images)),
                                images)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_normalize(dtype):
  mean = np.round(augment.CIFAR10_MEAN).astype(np.uint8)
  images = jnp.asarray(np.broadcast_to(mean, (2, 4, 4, 3)))
  out = jax.jit(augment.normalize, static_argnums=1)(images, dtype)
  assert out.dtype == dtype and out.shape == images.shape
  np.testing.assert_allclose(np.asarray(out, np.float32), 0, atol=0.02)
  white = augment.normalize(jnp.full((1, 1, 1, 3), 255, jnp.uint8), jnp.float32)
  expected = (255 - np.array(augment.CIFAR10_MEAN)) / np.array(augment.CIFAR10_STD)
  np.testing.assert_allclose(white[0, 0, 0], expected, rtol=1e-5)


def test_tta_views_without_translate_are_the_images_and_their_mirrors():
  images = _coordinate_images(2)
  views = augment.tta_views(jnp.asarray(images))
  assert [w for w, _ in views] == [0.5, 0.5]
  np.testing.assert_array_equal(views[0][1], images)
  np.testing.assert_array_equal(views[1][1], images[:, :, ::-1])


def test_tta_translate_adds_shifted_pairs_with_weights_summing_to_one():
  images = _coordinate_images(2)
  views = augment.tta_views(jnp.asarray(images), translate=1)
  assert len(views) == 6 and sum(w for w, _ in views) == pytest.approx(1.0)
  up_left, down_right = np.asarray(views[2][1]), np.asarray(views[4][1])
  assert up_left.shape == down_right.shape == images.shape
  # Shifted by one pixel each way; the new edge row/column is the reflected neighbour.
  np.testing.assert_array_equal(up_left[:, 1:, 1:], images[:, :-1, :-1])
  np.testing.assert_array_equal(up_left[:, 0, 1:], images[:, 1, :-1])
  np.testing.assert_array_equal(down_right[:, :-1, :-1], images[:, 1:, 1:])
  np.testing.assert_array_equal(views[3][1], up_left[:, :, ::-1])
