"""`--mode=predict`: image files classified by a trained run, right after training."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import TINY_RUN_EPOCHS, copy_run, tiny_config
from squeezenet_jax import checkpoints
from squeezenet_jax import trained_run
from squeezenet_jax import sharding
from squeezenet_jax import workdir as workdir_lib
from squeezenet_jax.errors import UserError
from squeezenet_jax.modes import predict
from squeezenet_jax.training import trainer as trainer_lib
from squeezenet_jax.training import steps
from test_main import error_line
from test_main import run_main


@pytest.fixture(scope='module')
def run(tmp_path_factory, tiny_run):
  """A tiny trained run (no export) and a folder: two 32x32 PNGs, a photo, a corrupt JPEG."""
  root = tmp_path_factory.mktemp('predict')
  config = tiny_config(num_epochs=TINY_RUN_EPOCHS)
  copy_run(tiny_run, root / 'run')
  folder = root / 'images'
  (folder / 'sub').mkdir(parents=True)
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  for i, image in enumerate(pixels):
    Image.fromarray(image).save(folder / f'{i}.png')
  Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(
      folder / 'sub' / 'photo.jpg')
  (folder / 'sub' / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
  return {'workdir': root / 'run', 'config': config, 'folder': folder, 'pixels': pixels}


def test_a_folder_with_a_corrupt_file_through_main(run):
  """The Must-show: the corrupt file is named, the others are still classified."""
  folder = run['folder']
  result = run_main('--mode=predict', f'--workdir={run["workdir"]}', str(folder))
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert lines[0].split() == ['image', '1st', '2nd', '3rd']
  rows = {line.split()[0]: line for line in lines[1:]}
  assert set(rows) == {str(folder / n) for n in ('0.png', '1.png', 'sub/photo.jpg',
                                                 'sub/corrupt.jpg')}
  for name in ('0.png', '1.png', 'sub/photo.jpg'):
    assert rows[str(folder / name)].count('class_') == 3  # the run's class names
    assert rows[str(folder / name)].count('%') == 3
  assert 'error: cannot decode image' in rows[str(folder / 'sub' / 'corrupt.jpg')]
  assert f'cannot classify {folder / "sub" / "corrupt.jpg"}' in result.stderr
  assert 'error:' not in result.stderr


def test_json_lines_through_main(run):
  folder = run['folder']
  result = run_main('--mode=predict', f'--workdir={run["workdir"]}', '--json', '--top_k=2',
                    str(folder / '0.png'), str(folder / 'sub'))
  assert result.returncode == 0, result.stderr[-2000:]
  objects = [json.loads(line) for line in result.stdout.splitlines()]
  assert [o['path'] for o in objects] == [str(folder / n) for n in (
      '0.png', 'sub/photo.jpg', 'sub/corrupt.jpg')]
  for o in objects[:2]:
    assert set(o) == {'path', 'top'} and len(o['top']) == 2
    assert all(set(t) == {'class', 'probability'} for t in o['top'])
    assert o['top'][0]['probability'] >= o['top'][1]['probability']
    assert 0 < sum(t['probability'] for t in o['top']) <= 1 + 1e-9
  assert set(objects[2]) == {'path', 'error'}


def test_no_readable_image_is_one_error_line_and_exit_2(run):
  corrupt = run['folder'] / 'sub' / 'corrupt.jpg'
  result = run_main('--mode=predict', f'--workdir={run["workdir"]}', str(corrupt))
  assert result.returncode == 2
  line = error_line(result)
  assert line.startswith(f'error: no image could be classified: {corrupt}: cannot decode')
  assert result.stdout == ''


def test_probabilities_are_the_checkpoints_eval_mode_softmax(run):
  """Predict classifies with the run's own model, as evaluation scores it."""
  workdir, config, pixels = str(run['workdir']), run['config'], run['pixels']
  result = predict.predict(workdir, trained_run.config_for(workdir, 'predict', {}), [str(run['folder'] / f'{i}.png') for i in range(2)],
                           top_k=10)
  assert result.format == 'checkpoint' and result.errors == []
  checkpointer = checkpoints.Checkpointer(workdir_lib.checkpoint_dir(workdir), read_only=True)
  graphdef, variables, _ = trainer_lib.restore_model(config, checkpointer, sharding.make_mesh())
  expected = jax.nn.softmax(steps.make_eval_logits(graphdef, config)(
      variables['params'], variables['batch_stats'], pixels))
  names = workdir_lib.read_classes(workdir)
  for top, probabilities in zip(result.top, np.asarray(expected)):
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    shown = dict(top)
    np.testing.assert_allclose([shown[name] for name in names], probabilities, atol=1e-5)


def test_missing_exports_and_bad_flags_are_user_errors(run):
  workdir, image = str(run['workdir']), str(run['folder'] / '0.png')
  with pytest.raises(UserError, match='no int8 export .* run --mode=export'):
    predict.predict(workdir, trained_run.config_for(workdir, 'predict', {}), [image], fmt='int8')
  with pytest.raises(UserError, match='no ONNX model at .* run --mode=export'):
    predict.predict(workdir, trained_run.config_for(workdir, 'predict', {}), [image], fmt='onnx')
  with pytest.raises(UserError, match='unknown --format=fp16'):
    predict.predict(workdir, trained_run.config_for(workdir, 'predict', {}), [image], fmt='fp16')
  with pytest.raises(UserError, match='--top_k=0'):
    predict.predict(workdir, trained_run.config_for(workdir, 'predict', {}), [image], top_k=0)
