"""What a process sets before it imports anything heavy: huge pages for malloc.

XLA:CPU allocates each step's large temporaries with malloc, which glibc serves with
mmap and returns with munmap, so every step faults their pages in again (millions of
minor page faults an epoch at batch 512, much of the CPU time in the kernel). glibc's
`glibc.malloc.hugetlb=1` tunable (glibc 2.35+) backs them with transparent huge
pages instead. Tunables are read when a process starts: `with_huge_pages` runs the
command again, in the same process, with the tunable set. Not on machines with an
accelerator plugin, where the host allocator is not the bottleneck. docs/cpu.md has
the measurements.
"""

import importlib.util
import os
import platform
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
_THP = '/sys/kernel/mm/transparent_hugepage/enabled'


def has_accelerator() -> bool:
  """Whether a GPU/TPU plugin is installed, without importing JAX."""
  return any(importlib.util.find_spec(name) is not None
             for name in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'libtpu'))


def _supported() -> bool:
  libc, version = platform.libc_ver()
  try:
    numbers = tuple(int(part) for part in version.split('.')[:2])
  except ValueError:
    return False
  try:
    with open(_THP) as f:
      available = '[never]' not in f.read()
  except OSError:
    return False
  return sys.platform == 'linux' and libc == 'glibc' and numbers >= (2, 35) and available


def with_huge_pages() -> None:
  """Re-executes this command with `TUNABLE` where it helps and is not set yet."""
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb' in tunables or has_accelerator() or not _supported():
    return
  env = {**os.environ, 'GLIBC_TUNABLES': ':'.join(filter(None, (tunables, TUNABLE)))}
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, sys.orig_argv, env)
  except OSError:  # the command goes on without them
    pass
