"""deploy.stablehlo_export: the jax.export artifact runs in a fresh process with only jax."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import tiny_config
from deploy_helpers import random_images
from deploy_helpers import random_model
from squeezenet_jax.deploy import inference
from squeezenet_jax.deploy import stablehlo_export

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')

# Run with the working directory outside the repository: the package is not importable.
RELOAD = '''
import sys
import jax, numpy as np
exported = jax.export.deserialize(bytearray(open(sys.argv[1], 'rb').read()))
images = np.load(sys.argv[2])
np.save(sys.argv[3], np.concatenate([exported.call(images[:5]), exported.call(images[5:])]))
assert not {'squeezenet_jax', 'flax'} & set(sys.modules), 'needed more than jax'
'''


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  config = tiny_config(**{'model.batch_norm': True, 'model.bypass': 'complex'})
  logits = inference.logits_fn(config, random_model(config, seed=1))
  path = stablehlo_export.save(logits, inference.image_spec(config),
                               tmp_path_factory.mktemp('exports') / stablehlo_export.DIRECTORY,
                               class_names=CLASSES)
  return logits, path


def test_reloaded_in_a_fresh_process_it_gives_the_same_logits(exported, tmp_path):
  logits, path = exported
  images = random_images(8, seed=3)
  np.save(tmp_path / 'images.npy', images)
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ''}
  subprocess.run([sys.executable, '-c', RELOAD, str(path.absolute()), 'images.npy', 'out.npy'],
                 cwd=tmp_path, env=env, check=True, timeout=120)
  reloaded = np.load(tmp_path / 'out.npy')
  expected = np.asarray(jax.jit(logits)(images))
  assert reloaded.shape == (8, 10) and np.abs(expected).max() > 1
  np.testing.assert_allclose(reloaded, expected, rtol=0, atol=1e-5)


def test_metadata_describes_the_input_and_names_the_classes(exported):
  _, path = exported
  metadata = json.loads((path.parent / 'model.json').read_text())
  assert metadata == stablehlo_export.read_metadata(path)
  assert metadata['input']['shape'] == [None, 32, 32, 3]
  assert metadata['input']['dtype'] == 'uint8'
  assert metadata['output']['shape'] == [None, 10]
  assert metadata['class_names'] == list(CLASSES)
  assert {'cpu', 'cuda', 'tpu'} <= set(metadata['platforms'])


def test_logits_from_the_artifact_in_this_process(exported):
  logits, path = exported
  images = random_images(3, seed=4)
  np.testing.assert_allclose(stablehlo_export.stablehlo_logits(path, images),
                             np.asarray(jax.jit(logits)(images)), rtol=0, atol=1e-5)
