"""Process setup: on CPU, Eigen's convolutions unless XLA_FLAGS or the platform says otherwise."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from squeezenet_jax import runtime


def _run(extra_env: dict[str, str]) -> str:
  """`cpu_settings`' return, the device count JAX then has, and XLA_FLAGS after it."""
  program = ('import os, jax; from squeezenet_jax import runtime\n'
             'print(runtime.cpu_settings(), jax.device_count(), '
             'repr(os.environ.get("XLA_FLAGS", "")))')
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  result = subprocess.run([sys.executable, '-c', program], cwd=REPO_ROOT,
                          env={**env, **extra_env}, capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout.strip()


def test_eigen_convolutions_on_cpu():
  assert _run({}) == f"True 1 '{runtime.EIGEN_CONVOLUTIONS}'"


def test_flags_the_user_chose_are_kept_and_added_to():
  count = '--xla_force_host_platform_device_count=4'
  assert _run({'XLA_FLAGS': count}) == f"True 4 '{count} {runtime.EIGEN_CONVOLUTIONS}'"
  own = '--xla_cpu_experimental_ynn_fusion_type=+individual_dot'
  assert _run({'XLA_FLAGS': own}) == f"False 1 '{own}'"


def test_jaxlibs_outside_the_tested_range_are_left_alone(monkeypatch):
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  monkeypatch.setattr(runtime, 'EIGEN_CONVOLUTIONS_JAXLIBS', ((0, 1), (0, 2)))
  assert not runtime.cpu_settings()
  assert 'XLA_FLAGS' not in os.environ


def test_the_flag_gives_the_same_convolutions(tmp_path):
  """Eigen's convolutions (a process with the flag) and XLA's default ones (this
  process) agree to float rounding, forward and in both gradients."""
  program = ('from squeezenet_jax import runtime\n'
             'assert runtime.cpu_settings()\n' + _CONVOLUTIONS +
             f'np.save({str(tmp_path / "eigen.npy")!r}, convolution_and_gradients())\n')
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  result = subprocess.run([sys.executable, '-c', program], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  namespace = {}
  exec(_CONVOLUTIONS, namespace)  # pylint: disable=exec-used
  eigen, default = np.load(tmp_path / 'eigen.npy'), namespace['convolution_and_gradients']()
  assert not np.array_equal(eigen, default), 'the flag changed nothing: other convolutions?'
  np.testing.assert_allclose(eigen, default,
                             rtol=1e-4, atol=1e-4)  # kernel gradients: sums of 2,048 terms


# Run in this process and in one with the flag: a 3x3 and a 1x1 convolution's outputs and
# input and kernel gradients, flattened.
_CONVOLUTIONS = """
import jax
import jax.numpy as jnp
import numpy as np


def convolution_and_gradients():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((8, 16, 16, 16), np.float32))
  kernels = [jnp.asarray(rng.standard_normal((k, k, 16, 32), np.float32) / (4 * k))
             for k in (3, 1)]

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  @jax.jit
  def outputs(x, w):
    return (conv(x, w),) + jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), (0, 1))(x, w)

  return np.concatenate([np.asarray(a).ravel() for w in kernels for a in outputs(x, w)])
"""
