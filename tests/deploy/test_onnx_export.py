"""deploy.onnx_export float32: jax2onnx's graph of the inference function, run by ONNX Runtime."""

import jax
import numpy as np
import onnx
import pytest

from conftest import tiny_config
from deploy_helpers import random_images
from deploy_helpers import random_model
from squeezenet_jax.deploy import inference
from squeezenet_jax.deploy import onnx_export
from squeezenet_jax.errors import UserError


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A BatchNorm, complex-bypass model (every layer kind SqueezeNet has), converted once."""
  config = tiny_config(**{'model.batch_norm': True, 'model.bypass': 'complex'})
  logits = inference.logits_fn(config, random_model(config, seed=1))
  path = onnx_export.save_float32(logits, inference.image_spec(config),
                                  tmp_path_factory.mktemp('exports') / onnx_export.FLOAT32_DIR)
  return config, logits, path


def test_onnx_runtime_logits_equal_the_jax_logits(exported):
  _, logits, path = exported
  images = random_images(37, seed=2)  # batches of 16: a ragged last one
  expected = np.asarray(jax.jit(logits)(images))
  actual = onnx_export.onnx_logits(path, images, batch_size=16)
  assert actual.dtype == np.float32 and actual.shape == expected.shape
  assert np.abs(expected).max() > 1
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_the_file_takes_uint8_nhwc_images_with_a_dynamic_batch(exported):
  config, _, path = exported
  model = onnx.load(path)
  onnx.checker.check_model(model, full_check=True)
  (images,), (logits,) = model.graph.input, model.graph.output
  assert (images.name, logits.name) == ('images', 'logits')
  assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
  assert logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
  batch, *rest = images.type.tensor_type.shape.dim
  assert batch.dim_param and not batch.HasField('dim_value')
  assert [d.dim_value for d in rest] == [32, 32, 3]
  assert logits.type.tensor_type.shape.dim[1].dim_value == config.model.num_classes
  # No BatchNorm or Dropout left: folded into the convs, and not traced at inference.
  ops = {node.op_type for node in model.graph.node}
  assert 'Conv' in ops and not ops & {'BatchNormalization', 'Dropout'}
  for n in (1, 5):
    assert onnx_export.onnx_logits(path, random_images(n)).shape == (n, 10)


def test_images_of_another_size_are_refused_in_one_line(exported):
  _, _, path = exported
  with pytest.raises(UserError, match=r'takes images of shape \[32, 32, 3\]'):
    onnx_export.onnx_logits(path, random_images(2, size=64))


def test_a_missing_file_is_named(tmp_path):
  with pytest.raises(UserError, match='no ONNX model at'):
    onnx_export.onnx_logits(tmp_path / 'model.onnx', random_images(1))
