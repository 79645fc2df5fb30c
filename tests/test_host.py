"""Huge pages for malloc: the command runs again, once, with glibc's tunable set."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from squeezenet_jax import host

CODE = ('import os, sys; from squeezenet_jax import host; print("start", flush=True); '
        'host.with_huge_pages(); print(os.getpid(), os.environ.get("GLIBC_TUNABLES"))')


def _run(env_extra):
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  result = subprocess.run([sys.executable, '-c', CODE], cwd=REPO_ROOT, env={**env, **env_extra},
                          capture_output=True, text=True, check=True)
  return result.stdout.split('\n')


@pytest.mark.skipif(not host._supported() or host.has_accelerator(),  # pylint: disable=protected-access
                    reason='no glibc 2.35+ with transparent huge pages here')
def test_the_command_runs_again_in_the_same_process_with_the_tunable():
  lines = _run({})
  assert lines[:2] == ['start', 'start']  # printed before and after the exec
  assert lines[2].split()[1] == host.TUNABLE
  # Other tunables are kept, and a set one is left alone (no second exec).
  lines = _run({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'})
  assert lines[2].split()[1] == f'glibc.malloc.arena_max=2:{host.TUNABLE}'
  lines = _run({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'})
  assert lines[0] == 'start' and lines[1].split()[1] == 'glibc.malloc.hugetlb=0'
