"""Process-wide JAX setup: logging to stderr and the persistent compilation cache."""

import os

import jax
from absl import logging


def setup() -> None:
  """Caches compiled programs across runs, so a rerun or resume skips most compilation."""
  logging.set_verbosity(logging.INFO)
  cache_root = os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache'))
  jax.config.update('jax_compilation_cache_dir',
                    os.environ.get('JAX_COMPILATION_CACHE_DIR',
                                   os.path.join(cache_root, 'squeezenet_jax', 'jax_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
