"""--mode=eval scores what it says: the run's classes, its held-out images, the data named."""


import numpy as np
import pytest
from PIL import Image

from conftest import copy_run
from conftest import tiny_config
from configs import default
from squeezenet_jax.data import dataset as dataset_lib
from squeezenet_jax.data import sources
from squeezenet_jax import trained_run
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.modes import evaluate

NUM_CLASSES = 10


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_run):
  """A tiny synthetic run (class names class_0 ... class_9)."""
  workdir = copy_run(tiny_run, tmp_path_factory.mktemp('evaluate') / 'run')
  return workdir, workdir_lib.read_json(workdir / 'results.json')


def write_folder(root, split, per_class, names=None, seed=0):
  """`per_class` random 32x32 PNGs per class under root/split/<name>/."""
  rng = np.random.default_rng(seed)
  for name in names or [f'class_{i}' for i in range(NUM_CLASSES)]:
    folder = root / split / name
    folder.mkdir(parents=True)
    for i in range(per_class):
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(folder / f'{i}.png')
  return root


def test_a_class_folder_the_run_was_not_trained_on_is_refused(trained, tmp_path):
  workdir, _ = trained
  names = [f'class_{i}' for i in range(NUM_CLASSES - 1)] + ['car']
  data = write_folder(tmp_path / 'data', 'test', 2, names)
  before = (workdir / 'results.json').read_text()
  with pytest.raises(UserError, match="class\\(es\\) car that the run was not trained on"):
    evaluate.run(str(workdir), trained_run.config_for(str(workdir), 'eval', {'data.source': 'folder', 'data.path': str(data)}))
  assert (workdir / 'results.json').read_text() == before


def test_a_data_path_alone_scores_that_folder_and_says_so(trained, tmp_path):
  workdir, _ = trained
  data = write_folder(tmp_path / 'data', 'test', 3)
  results = evaluate.run(str(workdir), trained_run.config_for(str(workdir), 'eval', {'data.path': str(data)}))
  assert results['test_images'] == 3 * NUM_CLASSES
  assert str(data) in results['test_data']


def test_a_subset_of_classes_is_scored_under_the_runs_labels(trained, tmp_path):
  workdir, _ = trained
  data = write_folder(tmp_path / 'data', 'test', 4, ['class_3', 'class_7'])
  results = evaluate.run(str(workdir), trained_run.config_for(str(workdir), 'eval', {'data.path': str(data)}))
  assert results['test_images'] == 8


@pytest.mark.parametrize('field, value', [
    ('data.val_size', 64), ('data.split_seed', 1), ('data.limit', 100),
    ('data.synthetic_train_size', 1024), ('data.image_size', 64),
    ('data.mean', (0.0, 0.0, 0.0)),
])
def test_an_override_that_changes_the_held_out_images_or_the_inputs_is_refused(
    tmp_path, field, value):
  (tmp_path / 'config.json').write_text(tiny_config().to_json())
  with pytest.raises(UserError, match=f'--config.{field}=.*leave the override out'):
    trained_run.config_for(str(tmp_path), 'eval', {field: value})


def test_an_override_equal_to_the_runs_own_value_is_accepted(tmp_path):
  (tmp_path / 'config.json').write_text(tiny_config().to_json())
  config = trained_run.config_for(str(tmp_path), 'eval', {'data.val_size': 128, 'eval_batch_size': 32})
  assert config.eval_batch_size == 32


def test_every_data_field_is_classified_once():
  groups = (dataset_lib.SCORED_FIELDS, dataset_lib.HELD_OUT_FIELDS, dataset_lib.INPUT_FIELDS)
  classified = [field for group in groups for field in group]
  assert len(classified) == len(set(classified))
  assert set(default.get_config().data) <= set(classified)


def test_labels_are_mapped_to_the_runs_classes_by_name():
  split = sources.Split(images=np.zeros((3, 1, 1, 3), np.uint8),
                            labels=np.array([0, 1, 1], np.int32))
  data = dataset_lib.Dataset(splits={'test': split}, class_names=('cat', 'dog'))
  mapped = dataset_lib.match_classes(data, ['bird', 'cat', 'deer', 'dog'])
  assert mapped.class_names == ('bird', 'cat', 'deer', 'dog')
  np.testing.assert_array_equal(mapped.splits['test'].labels, [1, 3, 3])
  assert dataset_lib.match_classes(data, None) is data
  with pytest.raises(UserError, match='dog'):
    dataset_lib.match_classes(data, ['bird', 'cat'])
