"""The one image walker: no directory twice, nothing opened that is not a file."""

import os

import numpy as np
import pytest
from PIL import Image

from squeezenet_jax.data import archives
from squeezenet_jax.data import walk
from squeezenet_jax.deploy import images as images_lib
from squeezenet_jax.errors import UserError


def _png(path, size=32, seed=0):
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
  Image.fromarray(pixels).save(path)


def test_a_link_loop_and_a_link_up_the_tree_are_walked_once(tmp_path):
  _png(tmp_path / 'outside.png')
  _png(tmp_path / 'dir' / 'a.png')
  os.symlink('..', tmp_path / 'dir' / 'up')  # back to the parent: outside the root
  os.symlink('.', tmp_path / 'dir' / 'self')
  os.symlink(tmp_path / 'dir', tmp_path / 'dir' / 'loop')
  found = [e.relative for e in walk.walk(tmp_path / 'dir') if e.kind == 'file']
  assert found == ['a.png', 'up/outside.png']
  result = images_lib.read_images([tmp_path / 'dir'], 32)
  assert len(result.names) == 2 and not result.errors


def test_a_named_pipe_is_reported_not_opened(tmp_path):
  _png(tmp_path / 'a.png')
  os.mkfifo(tmp_path / 'pipe.jpg')
  os.symlink(tmp_path / 'gone.png', tmp_path / 'broken.png')
  result = images_lib.read_images([tmp_path], 32)  # opening the pipe would block forever
  assert result.names == [str(tmp_path / 'a.png')]
  assert dict(result.errors) == {str(tmp_path / 'broken.png'): 'a broken link',
                                 str(tmp_path / 'pipe.jpg'): 'a named pipe, not a file'}
  named = images_lib.read_images([tmp_path / 'pipe.jpg'], 32)  # named directly
  assert named.errors == [(str(tmp_path / 'pipe.jpg'), 'a named pipe, not a file')]


def test_a_training_folder_holding_a_pipe_is_refused(tmp_path):
  _png(tmp_path / 'train' / 'cat' / '0.png')
  os.mkfifo(tmp_path / 'train' / 'cat' / '1.png')
  with pytest.raises(UserError, match='1.png .* is a named pipe'):
    archives.read_folder(str(tmp_path), 32)


def test_hidden_entries_are_left_out(tmp_path):
  _png(tmp_path / '.hidden.png')
  _png(tmp_path / '__MACOSX' / 'a.png')
  _png(tmp_path / 'b.png')
  assert [e.relative for e in walk.walk(tmp_path)] == ['b.png']


@pytest.mark.parametrize('mode', ['I;16', 'LA', 'P', 'RGBA', 'CMYK', 'L'])
def test_every_image_mode_becomes_8_bit_rgb_with_its_meaning(tmp_path, mode):
  grey = np.linspace(0, 1, 32 * 32).reshape(32, 32)
  if mode == 'I;16':
    image = Image.fromarray((grey * 65535).astype(np.uint16))
  else:
    image = Image.fromarray((grey * 255).astype(np.uint8)).convert(mode)
  rgb = np.asarray(archives.to_rgb(image, 'test'))
  assert rgb.dtype == np.uint8 and rgb.shape == (32, 32, 3)
  if mode in ('I;16', 'L', 'LA', 'RGBA', 'P'):  # opaque grey: the same ramp, not clipped
    np.testing.assert_allclose(rgb[..., 0], grey * 255, atol=2)


def test_pixels_of_unknown_range_are_refused():
  with pytest.raises(UserError, match='floating-point pixels'):
    archives.to_rgb(Image.fromarray(np.zeros((4, 4), np.float32)), 'Image x.tif')


def test_training_and_predict_read_a_tar_through_one_walker(tmp_path):
  _png(tmp_path / 'src' / 'train' / 'cat' / 'a.png')
  (tmp_path / 'src' / 'train' / 'cat' / 'notes.txt').write_text('not an image')
  import tarfile  # pylint: disable=g-import-not-at-top
  with tarfile.open(tmp_path / 'data.tar.gz', 'w:gz') as archive:
    archive.add(tmp_path / 'src' / 'train', arcname='train')
  members = list(walk.tar_members(tmp_path / 'data.tar.gz', lambda n: n.endswith('.png')))
  assert [(name, data is None) for name, data in members] == [
      ('train', True), ('train/cat', True), ('train/cat/a.png', False)]
  # Truncated mid-stream: training refuses the archive, predict names it.
  data = (tmp_path / 'data.tar.gz').read_bytes()
  (tmp_path / 'cut.tar.gz').write_bytes(data[:len(data) // 2])
  with pytest.raises(walk.TAR_ERRORS):
    list(walk.tar_members(tmp_path / 'cut.tar.gz', lambda n: True))
  with pytest.raises(UserError, match='readable .tar'):
    archives.read_folder(str(tmp_path / 'cut.tar.gz'), 32)
  result = images_lib.read_images([tmp_path / 'cut.tar.gz'], 32)
  assert 'unreadable archive' in result.errors[-1][1]
