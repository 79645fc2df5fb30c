"""Process-wide setup: readable logs, JAX's persistent compilation cache, jax.distributed."""

import logging as std_logging
import os
import sys
import warnings

import jax
import jaxlib
from absl import logging

from squeezenet_jax import host

# Where third-party log records come from. By default none show but critical ones: their
# INFO lines drown the training log, their warnings (orbax on read-only restores, optax
# on schedules) are nothing a user can act on, and their errors (a failed checkpoint
# write, logged once per orbax thread) reach the user as this package's one `error:`
# line. `--verbosity=0` or higher shows everything.
_THIRD_PARTY = ('/orbax/', '/jax/', '/jaxlib/', '/etils/', '/flax/', '/optax/',
                '/tensorstore/', '/asyncio/', '/absl/', '/tensorflow', '/ml_collections/',
                '/jax2onnx/', '/onnx/', '/onnx_ir/', '/onnxruntime/')


class _QuietLibraries(std_logging.Filter):

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno >= std_logging.CRITICAL
            or not any(part in record.pathname for part in _THIRD_PARTY))


def _quiet_unraisable(previous):
  """Drops TensorStore callbacks' 'Event loop is closed' (orbax's loop ended after a failed
  write, which is reported once, as the `error:` line); everything else goes through."""

  def hook(info):
    if info.exc_type is RuntimeError and str(info.exc_value) == 'Event loop is closed':
      return
    previous(info)

  return hook


def quiet_third_party_logs() -> None:
  """Only critical records from libraries; their Python warnings are dropped too."""
  logging.get_absl_handler().addFilter(_QuietLibraries())
  sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
  for module in ('orbax', 'jax', 'flax', 'optax', 'tensorstore', 'etils', 'absl',
                 'tensorflow', 'tensorflow_datasets', 'jax2onnx', 'onnx', 'onnx_ir',
                 'onnxruntime'):
    warnings.filterwarnings('ignore', module=module)


def setup(coordinator_address: str | None = None, num_processes: int | None = None,
          process_id: int | None = None, verbose: bool = False) -> None:
  """Logs, the compilation cache, CPU settings and, when configured, jax.distributed.

  INFO logs come from this package only unless `verbose` (the user gave --verbosity);
  compiled programs are cached across runs and resumes. Multi-process runs start when
  a coordinator is given by flag or by $JAX_COORDINATOR_ADDRESS (with
  $JAX_NUM_PROCESSES and $JAX_PROCESS_ID).
  """
  if not verbose:
    logging.set_verbosity(logging.INFO)
    quiet_third_party_logs()
  cpu_settings()
  cache_root = os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache'))
  jax.config.update('jax_compilation_cache_dir',
                    os.environ.get('JAX_COMPILATION_CACHE_DIR',
                                   os.path.join(cache_root, 'squeezenet_jax', 'jax_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  _maybe_initialize_distributed(coordinator_address, num_processes, process_id)


# XLA:CPU hands convolutions to Eigen instead of YNNPACK with this flag. The jaxlibs
# in the range have it; an XLA that does not know a flag aborts the process, so others
# are left as they are.
EIGEN_CONVOLUTIONS = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
EIGEN_CONVOLUTIONS_JAXLIBS = ((0, 10), (0, 13))  # [first, last) minor versions tested


def cpu_settings() -> bool:
  """On a machine without an accelerator, Eigen's convolutions in place of YNNPACK's;
  returns whether it set them.

  YNNPACK runs each convolution on one thread and its weight gradients through
  transposed copies of the activations; Eigen's are faster on SqueezeNet's maps and
  split each convolution over XLA's thread pool, so one device uses every core. The
  values are the same convolutions to float rounding. Nothing is set where XLA_FLAGS
  already chooses YNNPACK's fusions or JAX_PLATFORMS names another platform.
  docs/cpu.md has the measurements.
  """
  xla_flags = os.environ.get('XLA_FLAGS', '')
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if (host.has_accelerator() or platforms not in ('', 'cpu')
      or 'xla_cpu_experimental_ynn_fusion_type' in xla_flags
      or not _jaxlib_in(EIGEN_CONVOLUTIONS_JAXLIBS)):
    return False
  os.environ['XLA_FLAGS'] = f'{xla_flags} {EIGEN_CONVOLUTIONS}'.strip()
  return True


def _jaxlib_in(bounds: tuple[tuple[int, int], tuple[int, int]]) -> bool:
  try:
    version = tuple(int(part) for part in jaxlib.__version__.split('.')[:2])
  except ValueError:
    return False
  return bounds[0] <= version < bounds[1]


def _maybe_initialize_distributed(coordinator_address, num_processes, process_id) -> None:
  coordinator_address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if not coordinator_address:
    return
  env_int = lambda name: int(os.environ[name]) if name in os.environ else None
  num_processes = num_processes if num_processes is not None else env_int('JAX_NUM_PROCESSES')
  process_id = process_id if process_id is not None else env_int('JAX_PROCESS_ID')
  if jax.config.jax_platforms in (None, '', 'cpu') and not host.has_accelerator():
    # CPU processes need a collectives backend to all-reduce across processes.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                             process_id=process_id)
  logging.info('Process %d of %d; %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
