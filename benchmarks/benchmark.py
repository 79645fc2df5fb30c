"""Training/evaluation speed of a config, its time to an accuracy, and a PyTorch reference.

  python -m benchmarks.benchmark --config=configs/default.py [--config.x=y ...] \
      [--repeats=3] [--steps=N] [--target_accuracy=0.85] [--torch] [--out=FILE.json]

Speed is measured on what training really runs: one epoch as one compiled program
(`trainer_lib.Trainer.compile_epoch`, with the on-device shuffle and augmentation), called once
to warm up and then `--repeats` times; the median is the steady state. For pure speed
numbers without the CIFAR-10 download use synthetic data, e.g.
`--config.data.source=synthetic --config.data.synthetic_train_size=4608
--config.data.val_size=512`. Fields of the JSON: benchmarks/README.md.

Compilation caches are off, so compile times are cold, for JAX and torch alike.
"""

import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Protocol

from absl import app
from absl import flags
import flax
import jax
from ml_collections import config_flags

from benchmarks import torch_reference
from squeezenet_jax import accounting
from squeezenet_jax import cli
from squeezenet_jax import runtime
from squeezenet_jax.training import trainer as trainer_lib
from squeezenet_jax.training import steps

_CONFIG = config_flags.DEFINE_config_file('config', None, 'ml-collections config file.',
                                          lock_config=True)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed epochs (and evaluations) after the '
                                'warm-up one; the median is reported.')
_STEPS = flags.DEFINE_integer('steps', 0, 'Train on steps * batch_size images (sets '
                              'data.limit) so an epoch is this many steps; 0: all.')
_TARGET = flags.DEFINE_float('target_accuracy', None, 'Also measure the time until the '
                             'validation accuracy first reaches this, evaluating after '
                             'each epoch, for at most config.num_epochs epochs.')
_TORCH = flags.DEFINE_bool('torch', False, 'Also run the PyTorch reference '
                           '(benchmarks/torch_reference.py).')
_TORCH_COMPILE = flags.DEFINE_enum('torch_compile', 'default', torch_reference.COMPILE_MODES,
                                   'torch.compile mode of the reference (none: eager).')
_OUT = flags.DEFINE_string('out', None, 'Write the JSON report here.')

# Dense peak TFLOP/s by device kind (first substring match, case-insensitive). float32
# means TF32 tensor cores: XLA's default precision (and the reference's setting) uses it.
PEAK_TFLOPS = (
    ('H100 PCIe', {'bfloat16': 756.0, 'float32': 378.0}),
    ('H100', {'bfloat16': 989.0, 'float32': 494.7}),
    ('H200', {'bfloat16': 989.0, 'float32': 494.7}),
    ('A100', {'bfloat16': 312.0, 'float32': 156.0}),
)


class Runner(Protocol):
  """One framework's training, as calls that return once the device has finished."""

  aot_compile_seconds: float  # compiled before the first call (0 if compiled lazily)
  images_per_epoch: int
  eval_images: int

  def reset(self) -> None:
    """Back to the initial weights and step 0, keeping the compiled programs."""

  def train_epoch(self) -> float:
    """Trains one epoch; returns its mean loss."""

  def evaluate(self) -> float:
    """Returns the validation accuracy."""

  def device_fields(self) -> dict[str, Any]:
    """Device kind and count, versions, peak memory: the report's descriptive fields."""


class JaxRunner:
  """The trainer's own `trainer_lib.Trainer`, driven epoch by epoch with `compile_epoch`'s program.

  `config.epoch_loop` picks it: `scan` (the whole epoch as one program, the default on
  GPU/TPU) or `python` (one compiled step per dispatch, the default on CPU), so
  `--config.epoch_loop=...` tells the loop's cost from the step's.
  """

  def __init__(self, config):
    self.loop = steps.resolve_epoch_loop(config)
    self.exp = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
    self.images, self.labels = self.exp.device_train_data()
    self.epoch_fn, self.aot_compile_seconds = self.exp.compile_epoch(self.images, self.labels)
    self._initial = jax.device_get(self.exp.state)  # the epoch donates the device copy
    self.images_per_epoch = self.exp.steps_per_epoch * config.batch_size
    self.eval_images = len(self.exp.dataset.splits['validation'].labels)

  def reset(self) -> None:
    self.exp.state = jax.device_put(self._initial, self.exp.state_sharding)

  def train_epoch(self) -> float:
    self.exp.state, metrics = self.epoch_fn(self.exp.state, self.images, self.labels)
    return float(jax.device_get(metrics['train_loss']))

  def evaluate(self) -> float:
    return self.exp.score('validation')['accuracy']

  def device_fields(self) -> dict[str, Any]:
    device = jax.devices()[0]
    return {'device_kind': device.device_kind, 'device_count': self.exp.mesh.devices.size,
            'platform': device.platform, 'loop': self.loop,
            'peak_memory_bytes': peak_memory_bytes(device), 'jax_version': jax.__version__,
            'flax_version': flax.__version__}


def peak_memory_bytes(device) -> int | None:
  """The device allocator's peak, where the backend keeps statistics (not on CPU)."""
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # unimplemented on some backends
    stats = None
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  for name, peaks in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return peaks.get(dtype)
  return None


def flops_per_image(config) -> dict[str, int]:
  """From the analytic forward MACs: 2 FLOPs per MAC; training ~ 3x the forward."""
  macs = int(accounting.summarize(config)['macs'])
  return {'macs_per_image': macs, 'train_flops_per_image': 6 * macs,
          'eval_flops_per_image': 2 * macs}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def measure_speed(runner: Runner, repeats: int) -> dict[str, Any]:
  """Warm-up epoch, then the median of `repeats` epochs; the same for evaluation.

  Compile time is what the first call cost beyond a steady one (plus any ahead-of-time
  compilation), so it is defined alike for jax.jit and torch.compile.
  """
  first, loss = _timed(runner.train_epoch)
  epochs = [_timed(runner.train_epoch) for _ in range(max(1, repeats))]
  epoch_seconds = statistics.median(s for s, _ in epochs)
  eval_first, _ = _timed(runner.evaluate)
  evals = [_timed(runner.evaluate)[0] for _ in range(max(1, repeats))]
  eval_seconds = statistics.median(evals)
  return {
      'compile_seconds': runner.aot_compile_seconds + max(0.0, first - epoch_seconds),
      'first_epoch_seconds': first,
      'epoch_seconds': epoch_seconds,
      'epoch_seconds_each': [s for s, _ in epochs],
      'images_per_epoch': runner.images_per_epoch,
      'train_images_per_second': runner.images_per_epoch / epoch_seconds,
      'train_loss': [loss] + [l for _, l in epochs],
      'eval_compile_seconds': max(0.0, eval_first - eval_seconds),
      'eval_seconds': eval_seconds,
      'eval_images': runner.eval_images,
      'eval_images_per_second': runner.eval_images / eval_seconds,
  }


def time_to_accuracy(runner: Runner, target: float, max_epochs: int,
                     compile_seconds: float) -> dict[str, Any]:
  """Wall time from the initial weights until validation accuracy first reaches `target`.

  Runs on programs compiled by `measure_speed`, so the loop itself excludes compilation;
  the compile-included time adds the measured train and eval compile seconds.
  """
  runner.reset()
  history, elapsed, reached = [], 0.0, None
  for epoch in range(1, max_epochs + 1):
    seconds, loss = _timed(runner.train_epoch)
    eval_seconds, accuracy = _timed(runner.evaluate)
    elapsed += seconds + eval_seconds
    history.append({'epoch': epoch, 'train_loss': loss, 'val_accuracy': accuracy,
                    'seconds': elapsed})
    if not math.isfinite(loss):
      break
    if accuracy >= target:
      reached = epoch
      break
  return {
      'target_accuracy': target,
      'reached': reached is not None,
      'epochs': reached,
      'max_epochs': max_epochs,
      'seconds_excluding_compile': elapsed if reached else None,
      'seconds_including_compile': elapsed + compile_seconds if reached else None,
      'best_val_accuracy': max(h['val_accuracy'] for h in history),
      'history': history,
  }


def benchmark_runner(runner: Runner, config, repeats: int, target: float | None,
                     flops: dict[str, int]) -> dict[str, Any]:
  """Speed (and time to accuracy) of one runner, with TFLOP/s against its device's peak."""
  speed = measure_speed(runner, repeats)
  report = {**runner.device_fields(), **speed}
  report['train_tflops'] = speed['train_images_per_second'] * flops['train_flops_per_image'] / 1e12
  report['eval_tflops'] = speed['eval_images_per_second'] * flops['eval_flops_per_image'] / 1e12
  peak = peak_tflops(report['device_kind'], config.dtype)
  report['peak_tflops'] = peak
  report['train_fraction_of_peak'] = report['train_tflops'] / peak if peak else None
  report['load_average_1m'] = _load_average()
  if target is not None:
    report['time_to_accuracy'] = time_to_accuracy(
        runner, target, config.num_epochs,
        speed['compile_seconds'] + speed['eval_compile_seconds'])
  return report


def _torch_report(config, dataset, repeats: int, target: float | None,
                  flops: dict[str, int], compile_mode: str) -> dict[str, Any]:
  """The reference's report, or {'skipped': why} where torch or the config rules it out."""
  reason = torch_reference.unavailable_reason()
  if reason:
    return {'skipped': reason}
  try:
    with torch_reference.fresh_compile_cache():
      try:
        runner = torch_reference.TorchRunner(config, dataset.splits['train'],
                                             dataset.splits['validation'], compile_mode)
      except torch_reference.Unsupported as e:
        return {'skipped': str(e)}
      return benchmark_runner(runner, config, repeats, target, flops)
  except Exception as e:  # pylint: disable=broad-except
    # torch.compile / Inductor / CUDA failures must not take the JAX figure with them.
    return {'skipped': f'the PyTorch reference failed: {type(e).__name__}: '
                       f'{str(e).strip().splitlines()[0] if str(e).strip() else ""}',
            'failed': True}


def host_fields() -> dict[str, Any]:
  """The CPU as /proc/cpuinfo names it (model name, family, model), and its core count."""
  info = {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        info.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  return {'cpu_model': info.get('model name') or platform.processor() or None,
          'cpu_family': info.get('cpu family'), 'cpu_model_number': info.get('model'),
          'cpu_count': os.cpu_count(), 'cpus_usable': _usable_cpus(),
          'load_average_1m': _load_average(),
          'python_version': platform.python_version(),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def _usable_cpus() -> int | None:
  """CPUs this process may run on (taskset); both frameworks size their threads by it."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return None


def _load_average() -> float | None:
  """Other work on the host skews CPU numbers; this says how busy it was."""
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def run(config, *, repeats: int = 3, target_accuracy: float | None = None,
        with_torch: bool = False, torch_compile: str = 'default',
        write: Callable[[dict[str, Any]], None] = lambda report: None) -> dict[str, Any]:
  """The whole report for `config`: JAX, then optionally the torch reference.

  `write` gets the report with the JAX half before the torch half starts, then whole.
  """
  flops = flops_per_image(config)
  jax_runner = JaxRunner(config)
  report = {
      'config': config.to_dict(),
      'batch_size': config.batch_size,
      'dtype': config.dtype,
      'data': {'source': config.data.source, 'train_images': jax_runner.images_per_epoch,
               'val_images': jax_runner.eval_images},
      **flops,
      'host': host_fields(),
      'jax': benchmark_runner(jax_runner, config, repeats, target_accuracy, flops),
  }
  if with_torch:
    write({**report, 'torch': {'skipped': 'not finished'}})
    torch = _torch_report(config, jax_runner.exp.dataset, repeats, target_accuracy, flops,
                          torch_compile)
    report['torch'] = torch
    if 'skipped' not in torch:
      report['jax_over_torch_images_per_second'] = (
          report['jax']['train_images_per_second'] / torch['train_images_per_second'])
  write(report)
  return report


def _format_bytes(n: int | None) -> str:
  return 'n/a' if n is None else f'{n / 2**30:.2f} GiB'


def summary_line(name: str, r: dict[str, Any]) -> str:
  """One readable line for a framework's part of the report."""
  if 'skipped' in r:
    return f'{name}: skipped: {r["skipped"]}'
  peak = (f' = {100 * r["train_fraction_of_peak"]:.1f}% of {r["peak_tflops"]:.0f}'
          if r['peak_tflops'] else '')
  line = (f'{name} on {r["device_count"]}x {r["device_kind"]}: '
          f'train {r["train_images_per_second"]:,.0f} img/s ({r["epoch_seconds"]:.2f} s/epoch '
          f'of {r["images_per_epoch"]:,}; {r["train_tflops"]:.3f} TFLOP/s{peak}), '
          f'eval {r["eval_images_per_second"]:,.0f} img/s, compile {r["compile_seconds"]:.1f} s '
          f'+ eval {r["eval_compile_seconds"]:.1f} s, peak memory '
          f'{_format_bytes(r["peak_memory_bytes"])}')
  tta = r.get('time_to_accuracy')
  if tta:
    line += (f'; {tta["target_accuracy"]:.0%} val accuracy after {tta["epochs"]} epochs in '
             f'{tta["seconds_including_compile"]:.1f} s ({tta["seconds_excluding_compile"]:.1f}'
             ' s without compile)' if tta['reached'] else
             f'; {tta["target_accuracy"]:.0%} not reached in {tta["max_epochs"]} epochs '
             f'(best {tta["best_val_accuracy"]:.4f})')
  return line


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])} (flags are written --name=value)', 2)
  if _CONFIG.value is None:
    cli.fail('--config=configs/<name>.py is required', 2)
  if _TORCH.value:  # JAX would otherwise take 75% of the GPU before torch starts
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # read at backend init
  jax.config.update('jax_enable_compilation_cache', False)
  config = _CONFIG.value
  if _STEPS.value:
    config.data.limit = _STEPS.value * config.batch_size
  runtime.cpu_settings()  # as main.py trains: Eigen's convolutions on CPU
  stamp = {'command': ' '.join(['python -m benchmarks.benchmark'] + sys.argv[1:]),
           'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}

  def write(report: dict[str, Any]) -> None:
    if _OUT.value:
      _write_report(_OUT.value, {**report, **stamp})

  report = {**run(config, repeats=_REPEATS.value, target_accuracy=_TARGET.value,
                  with_torch=_TORCH.value, torch_compile=_TORCH_COMPILE.value, write=write),
            **stamp}
  print(summary_line('jax', report['jax']))
  if 'torch' in report:
    print(summary_line('torch', report['torch']))
  if 'jax_over_torch_images_per_second' in report:
    print(f'jax / torch train images/s: {report["jax_over_torch_images_per_second"]:.2f}')


def _write_report(path: str, report: dict[str, Any]) -> None:
  """Atomically: a reader never sees half a report."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(report, f, indent=2)
    f.write('\n')
  os.replace(tmp, path)


if __name__ == '__main__':
  from squeezenet_jax import host  # pylint: disable=g-import-not-at-top
  host.with_huge_pages()  # as main.py: huge pages for malloc on CPU
  app.run(main, flags_parser=cli.parse_flags)
