"""deploy.images and deploy.predictions: what --mode=predict reads and prints."""

import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from deploy_helpers import CIFAR10_JPEG_TRAIN
from squeezenet_jax.data import archives
from squeezenet_jax.deploy import images as images_lib
from squeezenet_jax.deploy import predictions
from squeezenet_jax.errors import UserError


def write_image(path, size=(32, 32), mode='RGB', fmt=None, seed=0):
  rng = np.random.default_rng(seed)
  channels = {'RGB': 3, 'RGBA': 4, 'L': 1}[mode]
  pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
  image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
  path.parent.mkdir(parents=True, exist_ok=True)
  image.save(path, format=fmt)
  return pixels


def image_bytes(size=(32, 32), fmt='PNG', seed=0) -> bytes:
  buffer = io.BytesIO()
  pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


def test_a_folder_with_one_corrupt_file_names_it_and_returns_the_others(tmp_path):
  exact = write_image(tmp_path / 'a.png')
  write_image(tmp_path / 'sub' / 'b.jpg', size=(640, 480))
  write_image(tmp_path / 'sub' / 'deeper' / 'c.bmp', size=(20, 50), mode='L', fmt='BMP')
  (tmp_path / 'sub' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
  (tmp_path / 'notes.txt').write_text('not an image, not a suffix we read')
  (tmp_path / '.hidden.png').write_bytes(b'skipped')
  result = images_lib.read_images([tmp_path], 32)
  assert result.names == [str(tmp_path / n) for n in ('a.png', 'sub/b.jpg', 'sub/deeper/c.bmp')]
  assert result.images.shape == (3, 32, 32, 3) and result.images.dtype == np.uint8
  np.testing.assert_array_equal(result.images[0], exact)  # already 32x32: untouched
  ((name, error),) = result.errors
  assert name == str(tmp_path / 'sub' / 'broken.jpg') and error


def test_large_and_odd_images_are_centre_cropped_and_resized(tmp_path):
  # A wide image: red left third, green middle, blue right third; the centre square is green.
  wide = np.zeros((100, 300, 3), np.uint8)
  wide[:, :100, 0] = wide[:, 100:200, 1] = wide[:, 200:, 2] = 255
  Image.fromarray(wide).save(tmp_path / 'wide.png')
  rgba = np.zeros((64, 64, 4), np.uint8)  # fully transparent: composited onto white
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'clear.png')
  result = images_lib.read_images([tmp_path / 'wide.png', tmp_path / 'clear.png'], 16)
  assert result.errors == []
  np.testing.assert_array_equal(result.images[0], np.broadcast_to([0, 255, 0], (16, 16, 3)))
  np.testing.assert_array_equal(result.images[1], np.full((16, 16, 3), 255))


def test_archives_tar_xz_and_zip(tmp_path):
  tar_path = tmp_path / 'images.tar.xz'
  with tarfile.open(tar_path, 'w:xz') as archive:
    for name, data in (('x/one.png', image_bytes(seed=1)), ('x/two.jpg', image_bytes(fmt='JPEG')),
                       ('x/bad.png', b'garbage'), ('readme.md', b'# not an image')):
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  zip_path = tmp_path / 'more.zip'
  with zipfile.ZipFile(zip_path, 'w') as archive:
    archive.writestr('three.png', image_bytes(size=(50, 40), seed=3))
    archive.writestr('__MACOSX/._three.png', b'resource fork')
  result = images_lib.read_images([tar_path, zip_path], 32)
  assert result.names == [f'{tar_path}:x/one.png', f'{tar_path}:x/two.jpg',
                          f'{zip_path}:three.png']
  assert result.images.shape == (3, 32, 32, 3)
  assert [name for name, _ in result.errors] == [f'{tar_path}:x/bad.png']


def test_unreadable_paths_are_named_not_fatal(tmp_path):
  write_image(tmp_path / 'ok.png')
  (tmp_path / 'broken.tar.gz').write_bytes(b'not gzip')
  (tmp_path / 'empty').mkdir()
  paths = [tmp_path / 'ok.png', tmp_path / 'missing.jpg', tmp_path / 'broken.tar.gz',
           tmp_path / 'empty']
  result = images_lib.read_images(paths, 32)
  assert result.names == [str(tmp_path / 'ok.png')]
  errors = dict(result.errors)
  assert set(errors) == {str(p) for p in paths[1:]}
  assert 'no such file' in errors[str(tmp_path / 'missing.jpg')]
  assert 'archive' in errors[str(tmp_path / 'broken.tar.gz')]
  assert 'no image files' in errors[str(tmp_path / 'empty')]
  with pytest.raises(UserError):
    images_lib.read_images([], 32)


@pytest.mark.skipif(not CIFAR10_JPEG_TRAIN.exists(), reason='needs the shared archive')
def test_cifar_jpegs_decode_as_the_training_pipeline_decodes_them(tmp_path):
  with tarfile.open(CIFAR10_JPEG_TRAIN, 'r|xz') as archive:
    member = next(m for m in archive if m.isfile())
    data = archive.extractfile(member).read()
  (tmp_path / 'cifar.jpg').write_bytes(data)
  expected = archives.decode_image(member.name, data, 32)  # what training reads
  np.testing.assert_array_equal(
      images_lib.read_images([tmp_path / 'cifar.jpg'], 32).images[0], expected)


def test_top_k_softmax_probabilities_most_probable_first():
  logits = np.array([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]], np.float32)
  top = predictions.top_k(logits, 2, ['cat', 'dog', 'frog'])
  e = np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()
  assert [c for c, _ in top[0]] == ['dog', 'frog'] and [c for c, _ in top[1]][0] == 'cat'
  np.testing.assert_allclose([p for _, p in top[0]], [e[1], e[2]])
  assert len(predictions.top_k(logits, 10)[0]) == 3  # k capped; unnamed classes by index
  assert predictions.top_k(logits, 1)[0] == [('1', pytest.approx(e[1]))]


def test_json_lines_follow_the_interface():
  tops = predictions.top_k(np.array([[1.0, 3.0]]), 2, ['cat', 'dog'])
  text = predictions.json_lines(['a.png'], tops, [('b.jpg', 'cannot decode image')])
  first, second = [json.loads(line) for line in text.splitlines()]
  assert first['path'] == 'a.png'
  assert [t['class'] for t in first['top']] == ['dog', 'cat']
  assert sum(t['probability'] for t in first['top']) == pytest.approx(1.0)
  assert set(first) == {'path', 'top'} and set(first['top'][0]) == {'class', 'probability'}
  assert second == {'path': 'b.jpg', 'error': 'cannot decode image'}


def test_table_lists_each_image_and_each_error():
  tops = predictions.top_k(np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 5.0]]), 2,
                           ['cat', 'dog', 'automobile'])
  text = predictions.table(['a.png', 'dir/b.png'], tops, [('c.jpg', 'not an image')])
  lines = text.splitlines()
  assert lines[0].split() == ['image', '1st', '2nd']
  assert lines[1].split()[:3] == ['a.png', 'dog', '84.4%']
  assert lines[2].startswith('dir/b.png') and 'automobile  98.7%' in lines[2]
  assert lines[3].split(maxsplit=1) == ['c.jpg', 'error: not an image']
