"""Process setup: on CPU, one single-threaded device per core that divides the batches."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs two cores')


def _run(batch_sizes, cpus: str, extra_env: dict[str, str]) -> str:
  """`cpu_devices`' return, the device count JAX then has, and XLA_FLAGS after it."""
  code = ('import os, jax; from squeezenet_jax import runtime\n'
          f'print(runtime.cpu_devices({batch_sizes!r}), jax.device_count(), '
          'repr(os.environ.get("XLA_FLAGS", "")))')
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  result = subprocess.run(['taskset', '-c', cpus, sys.executable, '-c', code], cwd=REPO_ROOT,
                          env={**env, **extra_env}, capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout.strip()


@pytest.mark.parametrize('batch_sizes, cpus, expected', [
    ((512, 1024), '0,1', "2 2 '--xla_cpu_multi_thread_eigen=false'"),
    ((31, 64), '0,1', "1 1 ''"),  # no count above 1 divides both
    ((512,), '0', "1 1 ''"),  # one usable core
])
def test_one_device_per_core_that_divides_the_batches(batch_sizes, cpus, expected):
  assert _run(batch_sizes, cpus, {}) == expected


def test_a_device_count_the_user_chose_is_kept():
  flags = '--xla_force_host_platform_device_count=4'
  assert _run((512,), '0,1', {'XLA_FLAGS': flags}) == f"None 4 '{flags}'"
