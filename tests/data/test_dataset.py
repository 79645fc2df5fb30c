"""Tests for input_pipeline: every source, the validation hold-out, the cache, errors."""

import io
import os
import pathlib
import tarfile
import time

from configs import default
import numpy as np
from PIL import Image
import pytest

from squeezenet_jax.data import archives
from squeezenet_jax.data import sources
from squeezenet_jax.data import dataset as input_pipeline
from squeezenet_jax.errors import UserError

_SHARED_ARCHIVE = 'cifar10-jpeg-train.tar.xz'
_CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                    'ship', 'truck')


def _data_config(tmp_path, **overrides):
  config = default.get_config().data
  config.cache_dir = str(tmp_path / 'cache')
  config.update(overrides)
  return config


def _write_image(path, size=8, value=(0, 0, 0)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _make_tree(root, split, counts, size=8, suffix='.png'):
  """Writes root/<split>/<class>/<nnn><suffix>; pixels encode (class index, image) exactly."""
  for c, name in enumerate(sorted(counts)):
    for i in range(counts[name]):
      _write_image(root / split / name / f'{i:03d}{suffix}', size, (10 + 20 * c, 10 + i, 7))
  return root


def _tar(src, dest, mode, prefix=''):
  with tarfile.open(dest, mode) as archive:
    for child in sorted(src.iterdir()):
      archive.add(child, arcname=prefix + child.name)
  return dest


def _pixel_ids(split):
  """(class code, image code) of each image, from the encoding in _make_tree."""
  return [tuple(p) for p in split.images[:, 0, 0, :2].tolist()]


# Source 'folder'.


def test_folder_merges_directory_and_archive(tmp_path):
  train_dir = _make_tree(tmp_path / 'a', 'train', {'cat': 6, 'dog': 4})
  test_dir = _make_tree(tmp_path / 'b', 'test', {'dog': 2, 'cat': 3})
  archive = _tar(test_dir, tmp_path / 'test.tar.gz', 'w:gz')
  config = _data_config(tmp_path, source='folder', path=f'{train_dir},{archive}',
                        image_size=8, val_size=4)

  dataset = input_pipeline.load_dataset(config, ('train', 'validation', 'test'))

  assert dataset.class_names == ('cat', 'dog')
  assert dataset.num_classes == 2
  for split, size in (('train', 6), ('validation', 4), ('test', 5)):
    images, labels = dataset.splits[split].images, dataset.splits[split].labels
    assert images.shape == (size, 8, 8, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(images[:, 0, 0, 0], 10 + 20 * labels)
  held_out = _pixel_ids(dataset.splits['train']) + _pixel_ids(dataset.splits['validation'])
  assert sorted(held_out) == sorted([(10, 10 + i) for i in range(6)] +
                                    [(30, 10 + i) for i in range(4)])
  # The test split keeps its order: by class, then file name.
  assert _pixel_ids(dataset.splits['test']) == [(10, 10), (10, 11), (10, 12), (30, 10), (30, 11)]


@pytest.mark.parametrize('mode,suffix,prefix', [('w', '.tar', './'), ('w:xz', '.tar.xz', '')])
def test_folder_reads_archives_like_directories(tmp_path, mode, suffix, prefix):
  tree = _make_tree(tmp_path / 'tree', 'test', {'a': 2, 'b': 3})
  _make_tree(tree, 'test', {'c': 2}, suffix='.jpg')
  archive = _tar(tree, tmp_path / f'data{suffix}', mode, prefix)

  from_dir, from_archive = (
      input_pipeline.load_dataset(_data_config(tmp_path, source='folder', path=str(p),
                                               image_size=8), ('test',))
      for p in (tree, archive))

  assert from_archive.class_names == from_dir.class_names == ('a', 'b', 'c')
  np.testing.assert_array_equal(from_archive.splits['test'].images,
                                from_dir.splits['test'].images)
  np.testing.assert_array_equal(from_archive.splits['test'].labels, [0, 0, 1, 1, 1, 2, 2])


def _shared_archive():
  # The shared folder beside the repository.
  archive = pathlib.Path(__file__).resolve().parents[2].parent / 'shared' / 'data' / _SHARED_ARCHIVE
  if not archive.exists():
    pytest.skip(f'{archive} not found')
  return archive


@pytest.fixture(scope='module')
def cifar_slice(tmp_path_factory):
  """A .tar.xz of the first 20 images of each class in the shared CIFAR-10 archive."""
  dest = tmp_path_factory.mktemp('slice') / 'cifar-slice.tar.xz'
  counts = {}
  with tarfile.open(_shared_archive(), 'r|*') as source, tarfile.open(dest, 'w:xz') as out:
    for member in source:
      label = member.name.split('/')[1] if member.isfile() else None
      if label is not None and counts.get(label, 0) < 20:
        counts[label] = counts.get(label, 0) + 1
        out.addfile(member, io.BytesIO(source.extractfile(member).read()))
      if len(counts) == 10 and min(counts.values()) == 20:
        break
  return dest


def test_folder_loads_a_slice_of_the_shared_archive(tmp_path, cifar_slice):
  config = _data_config(tmp_path, source='folder', path=str(cifar_slice), val_size=50)

  dataset = input_pipeline.load_dataset(config)

  assert dataset.class_names == _CIFAR10_CLASSES
  assert dataset.splits['train'].images.shape == (150, 32, 32, 3)
  assert dataset.splits['train'].images.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(dataset.splits['validation'].labels), [5] * 10)
  assert dataset.splits['train'].images.std() > 20  # real pictures, not blank
  assert input_pipeline.available_splits(config) == ('train', 'validation')


def test_folder_second_load_hits_the_cache(tmp_path, monkeypatch):
  tree = _make_tree(tmp_path / 'tree', 'train', {'a': 5, 'b': 5})
  config = _data_config(tmp_path, source='folder', path=str(tree), image_size=8, val_size=2)
  first = input_pipeline.load_dataset(config)

  def fail(*args):
    raise AssertionError(f'decoded again: {args}')

  with monkeypatch.context() as patch:
    patch.setattr(archives, 'read_folder', fail)
    second = input_pipeline.load_dataset(config)
  for split in ('train', 'validation'):
    np.testing.assert_array_equal(second.splits[split].images, first.splits[split].images)
    np.testing.assert_array_equal(second.splits[split].labels, first.splits[split].labels)
  assert [p.suffix for p in (tmp_path / 'cache').iterdir()] == ['.npz']  # no temp files

  # A changed file changes the key: decoded again.
  os.utime(tree / 'train' / 'a' / '000.png', ns=(1, 1))
  monkeypatch.setattr(archives, 'read_folder', fail)
  with pytest.raises(AssertionError, match='decoded again'):
    input_pipeline.load_dataset(config)


def test_folder_unreadable_cache_is_decoded_again(tmp_path):
  tree = _make_tree(tmp_path / 'tree', 'test', {'a': 2, 'b': 2})
  config = _data_config(tmp_path, source='folder', path=str(tree), image_size=8)
  first = input_pipeline.load_dataset(config, ('test',)).splits['test']
  (cache_file,) = (tmp_path / 'cache').iterdir()
  cache_file.write_bytes(b'truncated')

  again = input_pipeline.load_dataset(config, ('test',)).splits['test']

  np.testing.assert_array_equal(again.images, first.images)
  assert cache_file.stat().st_size > 100  # rewritten


def test_folder_decodes_in_worker_processes(tmp_path, monkeypatch):
  tree = _make_tree(tmp_path / 'tree', 'test', {'a': 7, 'b': 6})
  config = _data_config(tmp_path, source='folder', path=str(tree), image_size=8)
  inline = input_pipeline.load_dataset(config, ('test',)).splits['test']

  monkeypatch.setattr(archives, '_DECODE_CHUNK', 4)
  config.cache_dir = str(tmp_path / 'other_cache')
  pooled = input_pipeline.load_dataset(config, ('test',)).splits['test']

  np.testing.assert_array_equal(pooled.images, inline.images)
  np.testing.assert_array_equal(pooled.labels, inline.labels)


def test_test_only_path_serves_eval(tmp_path):
  tree = _make_tree(tmp_path / 'tree', 'test', {'a': 2, 'b': 2})
  config = _data_config(tmp_path, source='folder', path=str(tree), image_size=8)

  available = input_pipeline.available_splits(config)
  assert available == ('test',)
  assert input_pipeline.resolve_eval_split(config, available) == 'test'
  assert len(input_pipeline.load_dataset(config, ('test',)).splits['test'].labels) == 4
  with pytest.raises(UserError, match='train, validation not in .*available: test'):
    input_pipeline.load_dataset(config)


# Validation hold-out, limit and the eval split.


def test_validation_is_the_same_whatever_the_limit(tmp_path):
  config = _data_config(tmp_path, source='synthetic', val_size=100,
                        synthetic_train_size=500, synthetic_eval_size=10)
  full = input_pipeline.load_dataset(config)
  config.limit = 120
  limited = input_pipeline.load_dataset(config)

  np.testing.assert_array_equal(limited.splits['validation'].images,
                                full.splits['validation'].images)
  assert len(full.splits['train'].labels) == 400
  assert len(limited.splits['train'].labels) == 120
  np.testing.assert_array_equal(limited.splits['train'].images,
                                full.splits['train'].images[:120])
  assert np.bincount(limited.splits['train'].labels).min() >= 9  # classes mixed


def test_validation_is_stratified_and_seeded_by_split_seed(tmp_path):
  config = _data_config(tmp_path, source='synthetic', val_size=100,
                        synthetic_train_size=600, synthetic_eval_size=10)
  labels = input_pipeline.load_dataset(config).splits['validation'].labels
  train_counts = np.bincount(input_pipeline.load_dataset(config, ('train',)).splits['train']
                             .labels) + np.bincount(labels)
  assert np.abs(np.bincount(labels) - train_counts * 100 / 600).max() <= 1

  np.testing.assert_array_equal(
      input_pipeline.load_dataset(config, ('validation',)).splits['validation'].labels, labels)
  config.split_seed = 1
  assert not np.array_equal(
      input_pipeline.load_dataset(config, ('validation',)).splits['validation'].labels, labels)


@pytest.mark.parametrize('eval_split,available,expected', [
    ('', ('train', 'validation', 'test'), 'test'),
    ('', ('train', 'validation'), 'validation'),
    ('validation', ('train', 'validation', 'test'), 'validation'),
])
def test_resolve_eval_split(tmp_path, eval_split, available, expected):
  config = _data_config(tmp_path, eval_split=eval_split)
  assert input_pipeline.resolve_eval_split(config, available) == expected


def test_resolve_eval_split_rejects_a_missing_split(tmp_path):
  config = _data_config(tmp_path, eval_split='test')
  with pytest.raises(UserError, match="'test'.*available: train, validation"):
    input_pipeline.resolve_eval_split(config, ('train', 'validation'))


# Source 'synthetic'.


def test_synthetic_is_deterministic_and_learnable(tmp_path):
  config = _data_config(tmp_path, source='synthetic', val_size=50,
                        synthetic_train_size=500, synthetic_eval_size=200)
  dataset = input_pipeline.load_dataset(config, ('train', 'test'))
  again = input_pipeline.load_dataset(config, ('train', 'test'))

  train, test = dataset.splits['train'], dataset.splits['test']
  assert dataset.num_classes == 10
  assert train.images.shape == (450, 32, 32, 3) and train.images.dtype == np.uint8
  np.testing.assert_array_equal(again.splits['test'].images, test.images)
  means = np.stack([train.images[train.labels == c].mean(0) for c in range(10)])
  distances = ((test.images[:, None].astype(np.float32) - means) ** 2).sum((2, 3, 4))
  assert (distances.argmin(1) == test.labels).mean() > 0.5  # chance: 0.1


# Source 'tfds'.


@pytest.mark.slow
def test_tfds_with_mock_data(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  monkeypatch.setattr(sources, 'check_reachable', lambda *args: None)  # no network here
  config = _data_config(tmp_path, source='tfds', val_size=5, tfds_data_dir=str(tmp_path))

  with tfds.testing.mock_data(num_examples=20):
    dataset = input_pipeline.load_dataset(config, ('train', 'validation', 'test'))

  assert dataset.num_classes == 10
  for split, size in (('train', 15), ('validation', 5), ('test', 20)):
    assert dataset.splits[split].images.shape == (size, 32, 32, 3)
    assert dataset.splits[split].images.dtype == np.uint8
    assert dataset.splits[split].labels.dtype == np.int32


def test_tfds_offline_names_the_offline_options(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  requests = pytest.importorskip('requests')

  def offline(*args, **kwargs):
    raise requests.ConnectionError('no network (test)')

  monkeypatch.setattr(requests.Session, 'send', offline)
  monkeypatch.setattr(tfds.core.utils.gcs_utils, 'exists', lambda path: False)
  config = _data_config(tmp_path, source='tfds', tfds_data_dir=str(tmp_path / 'tfds'))

  with pytest.raises(UserError) as error:
    input_pipeline.load_dataset(config)
  message = str(error.value)
  assert '\n' not in message
  assert '--config.data.source=folder --config.data.path=' in message
  assert 'data.tfds_data_dir' in message


def test_tfds_offline_fails_within_seconds(tmp_path, monkeypatch):
  pytest.importorskip('tensorflow_datasets')
  # Every request goes to a local address that refuses connections: no network.
  for name in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'):
    monkeypatch.setenv(name, 'http://127.0.0.1:9')
  for name in ('NO_PROXY', 'no_proxy'):
    monkeypatch.delenv(name, raising=False)
  config = _data_config(tmp_path, source='tfds', tfds_data_dir=str(tmp_path / 'tfds'))
  start = time.monotonic()
  with pytest.raises(UserError, match='Cannot reach https://www.cs.toronto.edu') as error:
    input_pipeline.load_dataset(config)
  assert time.monotonic() - start < 30
  assert '--config.data.source=folder' in str(error.value) and '\n' not in str(error.value)


def test_tfds_unknown_dataset(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  config = _data_config(tmp_path, source='tfds', dataset='no_such_dataset')
  with pytest.raises(UserError, match="no dataset 'no_such_dataset'"):
    input_pipeline.load_dataset(config)


# Errors.


def _images_under_split(root):
  _write_image(root / 'train' / 'x.png')
  return root


def _no_split_folders(root):
  _write_image(root / 'cat' / 'x.png')
  return root


def _empty_class(root):
  _make_tree(root, 'train', {'cat': 2})
  (root / 'train' / 'dog').mkdir()
  return root


def _corrupt_image(root):
  _make_tree(root, 'train', {'cat': 2})
  (root / 'train' / 'cat' / 'bad.png').write_bytes(b'not an image')
  return root


def _wrong_size(root):
  _make_tree(root, 'train', {'cat': 2})
  _write_image(root / 'train' / 'cat' / 'big.png', size=9)
  return root


def _classes_differ(root):
  _make_tree(root, 'train', {'cat': 2, 'dog': 2})
  _make_tree(root, 'test', {'cat': 2})
  return root


def _unknown_split_folder(root):
  _make_tree(root, 'val', {'cat': 2})
  return root


def _no_images(root):
  (root / 'train' / 'cat').mkdir(parents=True)
  (root / 'train' / 'cat' / 'notes.txt').write_text('hi')
  return root


@pytest.mark.parametrize('make,message', [
    (_images_under_split, r"'train/x.png' .* not laid out <split>/<class>/<image>"),
    (_no_split_folders, r"'cat/x.png' .* not laid out <split>/<class>/<image>"),
    (_empty_class, 'Empty class folder.*train/dog'),
    (_corrupt_image, r'Cannot decode image .*train/cat/bad.png'),
    (_wrong_size, r'train/cat/big.png is 9x9, expected 8x8'),
    (_classes_differ, 'Class folders differ between splits: train has cat, dog; test has cat'),
    (_unknown_split_folder, "split folder 'val' is not one of train, validation, test"),
    (_no_images, 'No .jpg/.jpeg/.png images'),
])
def test_folder_errors(tmp_path, make, message):
  root = make(tmp_path / 'data')
  config = _data_config(tmp_path, source='folder', path=str(root), image_size=8, val_size=1)
  with pytest.raises(UserError, match=message):
    input_pipeline.load_dataset(config, input_pipeline.available_splits(config))


def test_folder_error_names_the_file_inside_an_archive(tmp_path):
  archive = _tar(_corrupt_image(tmp_path / 'data'), tmp_path / 'data.tar.gz', 'w:gz')
  config = _data_config(tmp_path, source='folder', path=str(archive), image_size=8)
  with pytest.raises(UserError, match=r'data.tar.gz:train/cat/bad.png'):
    input_pipeline.load_dataset(config)


@pytest.mark.parametrize('overrides,message', [
    ({'source': 'folder', 'path': '/no/such/dir'}, "data.path '/no/such/dir' does not exist"),
    ({'source': 'folder', 'path': ''}, 'needs data.path'),
    ({'source': 'synthetic', 'val_size': 5000}, 'data.val_size=5000 must be between 1 and'),
    ({'source': 'synthetic', 'val_size': 10, 'limit': -1}, 'data.limit=-1 must be >= 0'),
])
def test_config_errors(tmp_path, overrides, message):
  with pytest.raises(UserError, match=message):
    input_pipeline.load_dataset(_data_config(tmp_path, **overrides))


def test_not_an_archive(tmp_path):
  path = tmp_path / 'data.tar.gz'
  path.write_bytes(b'garbage')
  config = _data_config(tmp_path, source='folder', path=str(path))
  with pytest.raises(UserError, match='neither a directory nor a readable'):
    input_pipeline.load_dataset(config)


def test_unknown_split_requested(tmp_path):
  config = _data_config(tmp_path, source='synthetic')
  with pytest.raises(UserError, match='Unknown split'):
    input_pipeline.load_dataset(config, ('dev',))
