"""Process-wide setup: readable logs, JAX's persistent compilation cache, jax.distributed."""

import logging as std_logging
import os
import sys
import warnings
from collections.abc import Sequence

import jax
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
          process_id: int | None = None, verbose: bool = False,
          batch_sizes: Sequence[int] | None = None) -> None:
  """Logs, the compilation cache, CPU devices and, when configured, jax.distributed.

  INFO logs come from this package only unless `verbose` (the user gave --verbosity);
  compiled programs are cached across runs and resumes. Multi-process runs start when
  a coordinator is given by flag or by $JAX_COORDINATOR_ADDRESS (with
  $JAX_NUM_PROCESSES and $JAX_PROCESS_ID). `batch_sizes`: what a data-parallel
  command's device count must divide (`cpu_devices`); None leaves the devices as JAX
  makes them (a command on one device, e.g. predict).
  """
  if not verbose:
    logging.set_verbosity(logging.INFO)
    quiet_third_party_logs()
  if batch_sizes is not None and not (coordinator_address
                                      or os.environ.get('JAX_COORDINATOR_ADDRESS')):
    cpu_devices(batch_sizes)
  cache_root = os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache'))
  jax.config.update('jax_compilation_cache_dir',
                    os.environ.get('JAX_COMPILATION_CACHE_DIR',
                                   os.path.join(cache_root, 'squeezenet_jax', 'jax_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  _maybe_initialize_distributed(coordinator_address, num_processes, process_id)


def cpu_devices(batch_sizes: Sequence[int]) -> int | None:
  """On a machine without an accelerator: one JAX device per usable core, each running
  its ops on one thread; returns the count it set, or None where it set nothing.

  XLA:CPU splits each op of a step across its thread pool, which for SqueezeNet's
  small ops scales poorly past one core; devices instead run their share of the batch
  side by side (the `data` mesh axis), which is the same computation (tests: 4
  devices equal 1). The count is the most cores that divide every batch size. Nothing
  is set where XLA_FLAGS already chooses the host device count or threading, or
  JAX_PLATFORMS names another platform. docs/cpu.md has the measurements.
  """
  xla_flags = os.environ.get('XLA_FLAGS', '')
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if (host.has_accelerator() or platforms not in ('', 'cpu')
      or 'xla_force_host_platform_device_count' in xla_flags
      or 'xla_cpu_multi_thread_eigen' in xla_flags):
    return None
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  count = max(n for n in range(1, (cores or 1) + 1)
              if all(size % n == 0 for size in batch_sizes))
  if count > 1:
    jax.config.update('jax_num_cpu_devices', count)
    os.environ['XLA_FLAGS'] = f'{xla_flags} --xla_cpu_multi_thread_eigen=false'.strip()
    logging.info('CPU: %d devices of one thread each, one per core (XLA_FLAGS='
                 '--xla_force_host_platform_device_count=N chooses another count)', count)
  return count


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
