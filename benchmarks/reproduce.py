"""Every headline result from one command: `python -m benchmarks.reproduce --out=DIR`.

  python -m benchmarks.reproduce --out=DIR [--budget_seconds=540] [--smoke] [--force]
      [--data=cifar10-jpeg-train.tar.xz] [--wheels=carry] [--platform=gpu] [--mirror=DIR]

Steps, in this order, each through the project's command line (`main.py`,
`benchmarks.benchmark`) in a subprocess, its figures read back from the files the run
wrote (results.json, sizes.json, sweep.json, the benchmark's report):

  speed           configs/default.py in bfloat16 against the PyTorch reference, same
                  process, same data (`benchmarks.benchmark --torch`)
  squeezenet      configs/squeezenet_best.py on the archive (45,000 train / 5,000
                  validation): plain and TTA validation accuracy, wall / compile / train
                  seconds, then `--mode=export` (int8, compressed, ONNX: bytes, accuracy)
  seeds           two more seeds of squeezenet; mean and spread over the three
  alexnet         configs/alexnet_best.py, trained as squeezenet, not exported (k-means
                  and lzma of its 36M weights take minutes of CPU; a lease is short)
  sweep_versions  `--mode=sweep` of configs/sweeps/versions.py at full scale
  sweep_bypass    `--mode=sweep` of configs/sweeps/bypass.py at full scale

Each step writes DIR/<step>.json (atomically) after each of its commands, so a run
killed at its limit keeps every finished training and step, and a rerun with the same
--out skips the steps already done (`--force` redoes them) and resumes an interrupted
training from its checkpoint. A step whose estimated time no longer fits the budget is skipped and
recorded with its estimate (the model: benchmarks/README.md). The run ends with
DIR/summary.md: one table, the card and the versions, and every command run.

`--smoke` runs every step at tiny scale on the CPU (an 80-image slice of the archive,
or synthetic data without it), to find a broken step before any GPU time is spent.
Missing packages are installed first from --wheels (benchmarks/prepare_offline.sh),
then `benchmarks.preflight` checks the versions, `import flax.nnx` and, with
--platform, that JAX runs there. --mirror copies each step's JSON, summary.md and
logs.tgz (logs and the runs' small files) into a folder as soon as they are written:
the GPU machine's $OUT, whose files come back even when the command is cut.
"""

import argparse
import collections
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks import offline

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = 'cifar10-jpeg-train.tar.xz'
DEFAULT_WHEELS = 'carry'
SHARED_ARCHIVE = REPO.parent / 'shared' / 'data' / ARCHIVE

SPEED_CONFIG = 'configs/default.py'
SQUEEZENET_CONFIG = 'configs/squeezenet_best.py'
ALEXNET_CONFIG = 'configs/alexnet_best.py'
SWEEP_CONFIGS = {'sweep_versions': 'configs/sweeps/versions.py',
                 'sweep_bypass': 'configs/sweeps/bypass.py'}
# The most important figures first: a lease cut short keeps them.
STEPS = ('speed', 'squeezenet', 'seeds', 'alexnet', *SWEEP_CONFIGS)
# The speed step measures the default model in bfloat16 (the GPU's fast path); the
# sweeps' configs default to float32, and run in bfloat16 too, as every other step,
# checkpointing every 5 epochs rather than every one (AlexNet's are 270 MB each).
SPEED_OVERRIDES = {'dtype': 'bfloat16'}
SWEEP_OVERRIDES = {'dtype': 'bfloat16', 'checkpoint_every_epochs': 5}
EXTRA_SEEDS = 2
SUMMARY_FILE = 'summary.md'
LOGS_ARCHIVE = 'logs.tgz'
# The runs' small files that go into logs.tgz (paths under DIR/work).
RUN_FILES = ('*/results.json', '*/sizes.json', '*/sizes.md', '*/metrics.jsonl',
             '*/config.json', 'seeds/*/results.json', 'seeds/*/metrics.jsonl',
             'sweep_*/sweep.json', 'sweep_*/sweep.md', 'preflight.json', 'plan.json')
# Estimates: a model with r times the MACs of a measured one trains r**MACS_EXPONENT
# times slower (big convolutions and dense layers use a GPU better than SqueezeNet's
# small ones; a guess until that model's own rate is measured); measured allowances
# get MEASURED_MARGIN on top.
MACS_EXPONENT = 0.5
MEASURED_MARGIN = 1.25


@dataclasses.dataclass(frozen=True)
class Scale:
  """How big the run is, and the constants of its time estimates (seconds)."""

  name: str
  overrides: dict[str, Any]  # applied last to every training (smoke: tiny models)
  speed_args: tuple[str, ...]  # extra benchmark flags
  speed_allowance: float  # the speed step's estimate (nothing measured yet)
  process_allowance: float  # a subprocess's start, data load, evaluation, until measured
  compile_floor: float  # a training's compile allowance: at least this,
  compile_factor: float  # and this times the speed step's measured compile seconds
  validation_share: float  # periodic validation, as a share of the training time
  export_seconds_per_param: float  # --mode=export: k-means and lzma of every weight
  grace: float  # SIGTERM this long before the budget ends (a trainer saves, then exits)
  alexnet_export: bool
  # Until the speed step has measured a rate (it failed, or was skipped): SqueezeNet's
  # train images/s and the images of an epoch, so the later steps still run.
  fallback_rate: float
  fallback_train_images: int


# On one H100 (2026-11-25): a bare Flax SqueezeNet 1.1 with scanned epochs trained
# 135k-236k images/s at batch 256-1024 after a 13-15 s compile; torchvision's (bf16,
# torch.compile) 15,688 images/s after a ~55 s compile. The speed step decodes the
# archive (~15 s), compiles and times both: about 2 minutes. AlexNet is trained, not
# exported (k-means and lzma of its 36M weights take minutes of CPU: `--mode=export` on
# its workdir afterwards, off the lease).
FULL = Scale(name='full', overrides={}, speed_args=(), speed_allowance=180.0,
             process_allowance=30.0, compile_floor=20.0, compile_factor=1.5,
             validation_share=0.15, export_seconds_per_param=2.5e-6, grace=20.0,
             alexnet_export=False, fallback_rate=50_000.0, fallback_train_images=45_000)
# Tiny widths, one epoch of 3 steps; float32, since bfloat16 is emulated (slow) on CPU.
SMOKE = Scale(
    name='smoke',
    overrides={'num_epochs': 1, 'batch_size': 16, 'eval_batch_size': 32,
               'model.base_e': 16, 'model.incr_e': 16, 'model.squeeze_ratio': 0.5,
               'dtype': 'float32'},
    speed_args=('--repeats=1', '--torch_compile=none'), speed_allowance=120.0,
    process_allowance=20.0, compile_floor=5.0, compile_factor=1.5, validation_share=0.5,
    export_seconds_per_param=2.5e-6, grace=10.0, alexnet_export=False,
    fallback_rate=100.0, fallback_train_images=48)
SMOKE_IMAGES_PER_CLASS = 8  # 80 images: 32 for validation, 48 to train (3 steps of 16)
SMOKE_VAL_SIZE = 32


class BadInput(Exception):
  """A bad flag or a missing input: one `error:` line, exit status 2."""


class StepFailed(Exception):
  """A command of the step exited non-zero."""


class OutOfBudget(Exception):
  """The budget ran out while the step ran: it was stopped, and resumes on a rerun."""


class Stopped(Exception):
  """reproduce itself got SIGTERM/SIGINT."""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def _format_value(value: Any) -> str:
  return str(value).lower() if isinstance(value, bool) else str(value)


def config_args(overrides: dict[str, Any]) -> list[str]:
  return [f'--config.{k}={_format_value(v)}' for k, v in overrides.items()]


def shown(argv: list[str]) -> str:
  """The command as a user would type it (`python`, paths as given)."""
  return shlex.join(['python', *argv[1:]] if argv[0] == sys.executable else argv)


# ----------------------------------------------------------------------------
# Data.


def default_archive(wheels: Path) -> Path | None:
  for path in (wheels / ARCHIVE, SHARED_ARCHIVE):
    if path.is_file():
      return path
  return None


def smoke_archive(source: Path, target: Path, per_class: int) -> Path:
  """A small uncompressed tar of the first `per_class` images of each class of `source`."""
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  counts = collections.Counter()
  tmp = target.with_name(target.name + '.tmp')
  with tarfile.open(source, 'r|*') as archive, tarfile.open(tmp, 'w') as out:
    for member in archive:
      split_class = tuple(member.name.split('/')[:2])
      if member.isfile() and member.name.count('/') == 2 and counts[split_class] < per_class:
        counts[split_class] += 1
        out.addfile(member, archive.extractfile(member))
  os.replace(tmp, target)
  return target


# ----------------------------------------------------------------------------
# Running commands against the budget.


def _children_cpu_seconds() -> float:
  """User + system CPU of this process's finished children (and their waited-for ones)."""
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


class Runner:
  """The run's directories, data, budget, and the subprocess currently running."""

  def __init__(self, out: Path, scale: Scale, start: float, budget: float,
               data: dict[str, Any], env: dict[str, str], log: Callable[[str], None],
               mirror: Path | None = None):
    self.out = out
    self.mirror = mirror
    self.work = out / 'work'
    self.logs = out / 'logs'
    self.scale = scale
    self.data = data
    self.env = env
    self.log = log
    self.start = start  # time.monotonic() when the run began
    self.deadline = start + budget
    self.child: subprocess.Popen | None = None
    self.stop_signal: int | None = None
    self.after_command: Callable[[], None] = lambda: None  # the step's record, saved

  def remaining(self) -> float:
    """Seconds a step may still take (the grace before the end is kept back)."""
    return self.deadline - self.scale.grace - time.monotonic()

  def overrides(self, *extra: dict[str, Any]) -> list[str]:
    """Data, then the step's own, then the scale's overrides (the last one wins)."""
    merged = {**self.data}
    for overrides in (*extra, self.scale.overrides):
      merged.update(overrides)
    return config_args(merged)

  def on_signal(self, signum, frame) -> None:
    del frame
    self.stop_signal = signum
    if self.child is not None and self.child.poll() is None:
      self.child.send_signal(signal.SIGTERM)

  def run(self, step: str, argv: list[str], commands: list[dict]) -> dict:
    """Runs one command into logs/<step>.log; SIGTERM at the budget's end, then SIGKILL.

    Appends the command's record (also of one that failed or was stopped) to `commands`
    and returns it.
    """
    if self.stop_signal is not None:
      raise Stopped(f'stopped by signal {self.stop_signal} before: {shown(argv)}')
    if self.remaining() <= 0:
      raise OutOfBudget(f'no budget left to start: {shown(argv)}')
    self.logs.mkdir(parents=True, exist_ok=True)
    self.log(f'  $ {shown(argv)}')
    start, cpu_start = time.monotonic(), _children_cpu_seconds()
    with (self.logs / f'{step}.log').open('a') as log_file:
      log_file.write(f'\n[{_now()}] $ {shown(argv)}\n')
      log_file.flush()
      self.child = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=log_file,
                                    stderr=subprocess.STDOUT)
      terminated = False
      try:
        while True:
          try:
            rc = self.child.wait(timeout=1.0)
            break
          except subprocess.TimeoutExpired:
            pass
          now = time.monotonic()
          if now >= self.deadline:
            self.child.kill()
          elif not terminated and now >= self.deadline - self.scale.grace:
            terminated = True
            self.child.send_signal(signal.SIGTERM)
      finally:
        if self.child.poll() is None:  # an exception in this process: leave no child
          self.child.kill()
          self.child.wait()
        self.child = None
    wall, cpu = time.monotonic() - start, _children_cpu_seconds() - cpu_start
    self.log(f'    exit {rc} after {wall:.1f} s ({cpu:.1f} s of CPU)')
    record = {'command': shown(argv), 'returncode': rc, 'wall_seconds': round(wall, 2),
              'cpu_seconds': round(cpu, 2)}
    commands.append(record)
    self.after_command()
    if self.stop_signal is not None:
      raise Stopped(f'stopped by signal {self.stop_signal} during: {shown(argv)}')
    if terminated and rc:
      raise OutOfBudget(f'the budget ran out {wall:.0f} s into: {shown(argv)}')
    if rc:
      tail = (self.logs / f'{step}.log').read_text().splitlines()[-15:]
      raise StepFailed(f'exit status {rc} of: {shown(argv)}\n' + '\n'.join(tail))
    return record


# ----------------------------------------------------------------------------
# Steps. Each fills `record['results']` and appends each command to `record['commands']`.


def _read(path: Path) -> dict[str, Any]:
  return json.loads(path.read_text())


def _copy_atomically(source: Path, target: Path) -> None:
  tmp = target.with_name(f'.{target.name}.tmp')
  shutil.copyfile(source, tmp)
  os.replace(tmp, target)


def mirror(out: Path, target: Path) -> None:
  """Copies DIR/<step>.json and summary.md into `target`, and packs logs.tgz there:
  the logs and the runs' small files (RUN_FILES). At most len(STEPS) + 2 files, flat."""
  target.mkdir(parents=True, exist_ok=True)
  for name in (*(f'{step}.json' for step in STEPS), SUMMARY_FILE):
    if (out / name).exists():
      _copy_atomically(out / name, target / name)
  tmp = target / f'.{LOGS_ARCHIVE}.tmp'
  with tarfile.open(tmp, 'w:gz') as archive:
    for path in sorted([*out.glob('*.log'), *(out / 'logs').glob('*.log')]):
      archive.add(path, arcname=str(path.relative_to(out)))
    for pattern in RUN_FILES:
      for path in sorted((out / 'work').glob(pattern)):
        archive.add(path, arcname=str(path.relative_to(out)))
  os.replace(tmp, target / LOGS_ARCHIVE)


class Steps:
  """The plan's steps; each reads back what its commands wrote."""

  def __init__(self, runner: Runner, plan: 'Plan'):
    self.r = runner
    self.plan = plan

  def _main(self, record, step: str, *args: str) -> dict[str, Any]:
    return self.r.run(step, [sys.executable, 'main.py', *args], record['commands'])

  def speed(self, record) -> None:
    report_path = self.r.work / 'speed' / 'benchmark.json'
    report_path.unlink(missing_ok=True)
    argv = [sys.executable, '-m', 'benchmarks.benchmark', f'--config={SPEED_CONFIG}',
            *self.r.overrides(SPEED_OVERRIDES), '--torch', *self.r.scale.speed_args,
            f'--out={report_path}']
    try:
      self.r.run('speed', argv, record['commands'])
    finally:  # the JAX half is written before the torch half starts: keep it
      if report_path.exists():
        self._speed_results(record, _read(report_path))

  @staticmethod
  def _speed_results(record, report: dict[str, Any]) -> None:
    keep = ('device_kind', 'device_count', 'platform', 'compile_seconds', 'epoch_seconds',
            'train_images_per_second', 'eval_images_per_second', 'train_tflops',
            'peak_tflops', 'train_fraction_of_peak', 'peak_memory_bytes', 'train_loss',
            'jax_version', 'torch_version', 'model_source', 'compile_mode', 'skipped')
    pick = lambda r: {k: r[k] for k in keep if k in r}
    record['results'] = {
        'dtype': report['dtype'], 'batch_size': report['batch_size'], 'data': report['data'],
        'macs_per_image': report['macs_per_image'], 'jax': pick(report['jax']),
        'torch': pick(report['torch']) if 'torch' in report else {'skipped': 'not run'},
        'jax_over_torch_images_per_second': report.get('jax_over_torch_images_per_second'),
        'host': report.get('host'), 'benchmark': report}

  def _trained(self, record, step: str, config: str, workdir: Path,
               publish: Callable[[dict[str, Any]], None],
               extra: dict[str, Any] | None = None, export: bool = True) -> None:
    """Trains (or resumes) one run, scores it plain and with TTA, and exports it.

    The run's figures are `publish`ed into the record as soon as it is trained, so a
    failed or cut export keeps them; the export's rows are added to the same dict.
    """
    train = self._main(record, step, f'--config={config}', f'--workdir={workdir}',
                       *self.r.overrides({'eval_tta': True, **(extra or {})}))
    results = _read(workdir / 'results.json')
    fields = ('params', 'macs', 'epochs', 'steps', 'train_seconds', 'compile_seconds',
              'images_per_second', 'checkpoint_bytes', 'devices', 'val_accuracy')
    run = {'config': config, 'workdir': str(workdir), 'wall_seconds': train['wall_seconds'],
           **{k: results.get(k) for k in fields}}
    run['seed'] = _read(workdir / 'config.json').get('seed')
    train.update(kind='train', train_seconds=run['train_seconds'],
                 compile_seconds=run['compile_seconds'])
    # Training scores validation plain and, with eval_tta (see `_trained`'s overrides),
    # mirrored-and-averaged as val_accuracy_tta: no evaluation process of its own.
    run.update(val_accuracy=results.get('val_accuracy'),
               val_accuracy_tta=results.get('val_accuracy_tta'))
    publish(run)
    if not export:
      return
    scored_on = (f'--workdir={workdir}', '--config.data.eval_split=validation')
    sizes_path = workdir / 'sizes.json'
    sizes_path.unlink(missing_ok=True)  # an older export's: only this one's is read
    try:
      self._main(record, step, '--mode=export', *scored_on)['kind'] = 'export'
    finally:  # export writes sizes.json before its ONNX formats: keep what it wrote
      if sizes_path.exists():
        sizes = _read(sizes_path)
        run['exports'] = {row['format']: {k: row.get(k) for k in ('bytes', 'accuracy',
                                                                   'accuracy_delta')}
                          for row in sizes['formats']}
        if sizes.get('failed_formats'):
          run['exports']['failed'] = sizes['failed_formats']

  def squeezenet(self, record) -> None:
    self._trained(record, 'squeezenet', SQUEEZENET_CONFIG, self.r.work / 'squeezenet',
                  lambda run: record.__setitem__('results', run))

  def alexnet(self, record) -> None:
    self._trained(record, 'alexnet', ALEXNET_CONFIG, self.r.work / 'alexnet',
                  lambda run: record.__setitem__('results', run),
                  export=self.r.scale.alexnet_export)
    if not self.r.scale.alexnet_export:
      record['results']['exports'] = {
          'not_run': 'k-means and lzma of 36M weights take minutes of CPU: run '
                     '--mode=export on the workdir'}

  def seeds(self, record) -> None:
    record['results'] = {'runs': []}  # each seed's run kept as soon as it is trained
    for seed in self.plan.extra_seeds():
      self._trained(record, 'seeds', SQUEEZENET_CONFIG,
                    self.r.work / 'seeds' / f'seed_{seed}', record['results']['runs'].append,
                    {'seed': seed}, export=False)

  def sweep(self, record, step: str) -> None:
    workdir = self.r.work / step
    failure = None
    try:
      command = self._main(record, step, '--mode=sweep', f'--config={SWEEP_CONFIGS[step]}',
                           f'--workdir={workdir}', *self.r.overrides(SWEEP_OVERRIDES))
      command['kind'] = 'sweep'
    except (StepFailed, OutOfBudget, Stopped) as e:  # the finished points are still reported
      failure = e
    if not (workdir / 'sweep.json').exists():
      raise failure or StepFailed(f'{workdir}/sweep.json was not written')
    report = _read(workdir / 'sweep.json')
    record['results'] = {'config': SWEEP_CONFIGS[step], 'workdir': str(workdir),
                         'points': report['points'], 'pending': report['pending'],
                         'failed': report['failed']}
    if failure:
      raise failure


# ----------------------------------------------------------------------------
# The plan: what each step will train, and how long that should take.


class Plan:
  """The steps' trainings (epochs, seed, MACs, parameters), for their estimates.

  From one `benchmarks.config_info` process (resolved configs, sweep points, and
  `--mode=summary`'s sizes), cached in work/plan.json.
  """

  def __init__(self, runner: Runner):
    self.r = runner
    self._info: dict[str, Any] | None = None

  def requests(self) -> list[dict[str, Any]]:
    """Each training whose cost is estimated: its config file and overrides."""
    return [{'name': 'squeezenet', 'config': SQUEEZENET_CONFIG, 'args': self.r.overrides()},
            {'name': 'alexnet', 'config': ALEXNET_CONFIG, 'args': self.r.overrides()},
            *({'name': step, 'config': config, 'args': self.r.overrides(SWEEP_OVERRIDES),
               'sweep': True} for step, config in SWEEP_CONFIGS.items())]

  def info(self) -> dict[str, Any]:
    if self._info is None:
      self._info = self._load()
    return self._info

  def _load(self) -> dict[str, Any]:
    requests = self.requests()
    key = hashlib.sha256(json.dumps(requests).encode()).hexdigest()[:16]
    path = self.r.work / 'plan.json'
    if path.exists():
      cached = _read(path)
      if cached.get('key') == key:
        return cached
    self.r.log('planning: resolving configs and model sizes')
    done = subprocess.run([sys.executable, '-m', 'benchmarks.config_info', json.dumps(requests)],
                          cwd=REPO, env={**self.r.env, 'JAX_PLATFORMS': 'cpu'},
                          capture_output=True, text=True, check=False)
    if done.returncode:
      raise StepFailed(f'benchmarks.config_info failed:\n{done.stderr[-2000:]}')
    entry = lambda name, e: {'name': name, 'num_epochs': e['config']['num_epochs'],
                             'seed': e['config']['seed'], 'macs': e['macs'],
                             'params': e['params']}
    trainings = {}
    for request, described in zip(requests, json.loads(done.stdout)):
      trainings[request['name']] = (
          [entry(p['name'], p) for p in described['points']] if request.get('sweep')
          else [entry(request['name'], described)])
    info = {'key': key, 'trainings': trainings}
    self.r.work.mkdir(parents=True, exist_ok=True)
    _write_json(path, info)
    return info

  def extra_seeds(self) -> list[int]:
    base = self.info()['trainings']['squeezenet'][0]['seed']
    return [base + i for i in range(1, EXTRA_SEEDS + 1)]


class Estimator:
  """Seconds a step should take, from what this run (or an earlier one) measured.

  - a training: process allowance + compile allowance + epochs x images per epoch /
    rate, plus `validation_share` of that for periodic validation. The rate is the
    measured train images/s of the nearest model in MACs (the speed step's, or a
    finished training's), divided by (MACs ratio)**MACS_EXPONENT for a bigger model and
    never raised for a smaller one.
  - compile allowance: max(compile_floor, compile_factor x the longest compile measured:
    the speed step's cold JAX compile, or a training's).
  - process allowance (start, data from the cache, evaluations, checkpoints):
    MEASURED_MARGIN x the largest measured so far (a training's wall less its train
    and compile seconds, an evaluation's wall), until then `process_allowance`.
  - an evaluation: one process allowance; an export: one plus
    `export_seconds_per_param` x parameters.
  Until a rate is measured (the speed step failed or was skipped), SqueezeNet 1.1 is
  taken to train at the scale's `fallback_rate` on `fallback_train_images` an epoch.
  """

  def __init__(self, scale: Scale, records: dict[str, dict], plan: Plan):
    self.scale = scale
    self.plan = plan
    # The speed step's JAX figures, also where its torch half failed or was cut.
    self.speed = (records.get('speed') or {}).get('results')
    self.rates, overheads, compiles = [], [], []
    if self.speed:
      self.rates.append((self.speed['macs_per_image'],
                         self.speed['jax']['train_images_per_second']))
      compiles.append(self.speed['jax']['compile_seconds'])
    for record in records.values():
      if record.get('status') != 'done':
        continue
      for command in record.get('commands', []):
        if command.get('kind') == 'train':
          compiles.append(command.get('compile_seconds') or 0.0)
          overheads.append(command['wall_seconds'] - (command.get('train_seconds') or 0.0)
                           - (command.get('compile_seconds') or 0.0))
        elif command.get('kind') == 'eval':
          overheads.append(command['wall_seconds'])
      for run in _runs(record):
        if run.get('macs') and run.get('images_per_second'):
          self.rates.append((run['macs'], run['images_per_second']))
    self.overhead = (MEASURED_MARGIN * max(overheads) if overheads
                     else scale.process_allowance)
    self.compile = max([scale.compile_floor, *(scale.compile_factor * c for c in compiles)])

  def rate(self, macs: float) -> float:
    rates = self.rates or [(self.plan.info()['trainings']['squeezenet'][0]['macs'],
                            self.scale.fallback_rate)]
    macs0, rate0 = min(rates, key=lambda mr: abs(math.log(mr[0] / macs)))
    return rate0 * min(1.0, macs0 / macs) ** MACS_EXPONENT

  def training(self, entry: dict[str, Any]) -> float:
    train_images = (self.speed['data']['train_images'] if self.speed
                    else self.scale.fallback_train_images)
    images = entry['num_epochs'] * train_images
    compute = images / self.rate(entry['macs']) * (1 + self.scale.validation_share)
    return self.overhead + self.compile + compute

  def export(self, entry: dict[str, Any]) -> float:
    return self.overhead + entry['params'] * self.scale.export_seconds_per_param

  def step(self, step: str) -> float | None:
    if step == 'speed':
      return self.scale.speed_allowance
    trainings = self.plan.info()['trainings']
    if step in ('squeezenet', 'alexnet'):  # training scores validation plain and with TTA
      entry = trainings[step][0]
      export = step == 'squeezenet' or self.scale.alexnet_export
      return self.training(entry) + (self.export(entry) if export else 0.0)
    if step == 'seeds':
      return EXTRA_SEEDS * self.training(trainings['squeezenet'][0])
    return sum(self.training(point) for point in trainings[step]) + self.overhead


def _runs(record: dict[str, Any]) -> list[dict[str, Any]]:
  """The trained runs a step record holds (one, several seeds, or sweep points)."""
  results = record.get('results') or {}
  if 'runs' in results:
    return results['runs']
  if 'points' in results:
    return results['points']
  return [results] if 'train_seconds' in results else []


# ----------------------------------------------------------------------------
# Statistics over the seeds.


def spread(values: list[float]) -> dict[str, Any]:
  values = [v for v in values if v is not None]
  if not values:
    return {'n': 0}
  return {'n': len(values), 'mean': statistics.fmean(values),
          'std': statistics.stdev(values) if len(values) > 1 else 0.0,
          'min': min(values), 'max': max(values)}


def over_seeds(records: dict[str, dict]) -> dict[str, Any] | None:
  """Mean and spread of the squeezenet step's run and the extra seeds' runs."""
  runs = []
  if records.get('squeezenet', {}).get('status') == 'done':
    first = records['squeezenet']['results']
    runs.append(first)
  if records.get('seeds', {}).get('status') == 'done':
    runs += records['seeds']['results']['runs']
  if not runs:
    return None
  return {'seeds': [r.get('seed') for r in runs],
          **{key: spread([r.get(key) for r in runs])
             for key in ('val_accuracy', 'val_accuracy_tta', 'train_seconds')}}


# ----------------------------------------------------------------------------
# The whole run.


def _write_json(path: Path, obj: Any) -> None:
  from squeezenet_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.write_json(path, obj)


def _save_record(runner: Runner, step: str, record: dict[str, Any]) -> None:
  _write_json(runner.out / f'{step}.json', record)
  if runner.mirror is not None:
    mirror(runner.out, runner.mirror)


def load_records(out: Path) -> dict[str, dict]:
  records = {}
  for step in STEPS:
    path = out / f'{step}.json'
    if path.exists():
      try:
        records[step] = _read(path)
      except json.JSONDecodeError:
        pass  # a hand-edited or foreign file: the step runs again
  return records


def run_plan(runner: Runner, force: bool) -> dict[str, dict]:
  """Runs every step not done yet, writing DIR/<step>.json as each ends."""
  plan = Plan(runner)
  steps = Steps(runner, plan)
  records = load_records(runner.out)
  other = sorted({r.get('scale') for r in records.values()} - {runner.scale.name})
  if other:
    raise BadInput(f'{runner.out} holds a {other[0]} run; give this {runner.scale.name} '
                   'run another --out')
  for step in STEPS:
    previous = records.get(step, {})
    if previous.get('status') == 'done' and not force:
      runner.log(f'step {step}: done in an earlier run, skipped '
                 f'(--force, or deleting {step}.json, runs it again)')
      continue
    record = {'step': step, 'scale': runner.scale.name, 'started': _now(), 'commands': []}
    save = functools.partial(_save_record, runner, step)
    try:
      estimate = Estimator(runner.scale, records, plan).step(step)
    except StepFailed as e:  # planning failed: the step cannot be estimated
      estimate, record['planning_error'] = None, str(e)
    left = runner.remaining()
    record['estimate_seconds'] = None if estimate is None else round(estimate, 1)
    record['seconds_left'] = round(left, 1)
    if estimate is None or estimate > left:
      if 'planning_error' in record:
        reason = 'planning failed (see planning_error)'
      else:
        reason = f'estimated {estimate:.0f} s, {max(0.0, left):.0f} s of the budget left'
      record.update(status='skipped', reason=reason)
      runner.log(f'step {step}: skipped: {reason}')
    else:
      runner.log(f'step {step}: running (estimated {estimate:.0f} s, {left:.0f} s left)')
      start = time.monotonic()
      if force:  # a fresh start, not a resume of the earlier run's training
        shutil.rmtree(runner.work / step, ignore_errors=True)
      # After each command: what the step has so far (a cut run keeps finished trainings).
      runner.after_command = lambda: save({**record, 'status': 'running',
                                           'wall_seconds': round(time.monotonic() - start, 2)})
      try:
        if step in SWEEP_CONFIGS:
          steps.sweep(record, step)
        else:
          getattr(steps, step)(record)
        record['status'] = 'done'
      except StepFailed as e:
        record.update(status='failed', error=str(e))
      except OutOfBudget as e:
        record.update(status='interrupted', reason=str(e))
      except Stopped as e:
        record.update(status='interrupted', reason=str(e))
      runner.after_command = lambda: None
      record['wall_seconds'] = round(time.monotonic() - start, 2)
      runner.log(f'step {step}: {record["status"]} after {record["wall_seconds"]:.0f} s'
                 + (f': {record.get("error") or record.get("reason")}'
                    if record['status'] != 'done' else ''))
    record['finished'] = _now()
    if step == 'seeds' and record['status'] == 'done':
      record['results']['over_three'] = over_seeds({**records, step: record})
    records[step] = record
    save(record)
    if runner.stop_signal is not None:
      break
  return records


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='python -m benchmarks.reproduce',
                                   description=__doc__.split('\n', 1)[0])
  parser.add_argument('--out', required=True, help='Directory for <step>.json and summary.md.')
  parser.add_argument('--budget_seconds', type=float, default=540.0,
                      help='Skip steps whose estimate no longer fits; stop at this time.')
  parser.add_argument('--smoke', action='store_true',
                      help='Every step at tiny scale on the CPU.')
  parser.add_argument('--force', action='store_true', help='Redo steps already done.')
  parser.add_argument('--data', default=None,
                      help=f'The CIFAR-10 JPEG archive (default: WHEELS/{ARCHIVE}, else '
                           f'../shared/data/{ARCHIVE}).')
  parser.add_argument('--wheels', default=None,
                      help='Wheels to install offline when an import is missing '
                           f'(default: {DEFAULT_WHEELS}/ in the repository).')
  parser.add_argument('--platform', choices=('any', 'cpu', 'gpu'), default='any',
                      help='Where JAX must run: stop at once, with one line, where it does '
                           'not (gpu: JAX_PLATFORMS=cuda, so a CUDA plugin that fails to '
                           'load is an error, not a silent fall back to the CPU).')
  parser.add_argument('--mirror', default=None,
                      help='Copy each <step>.json, summary.md and logs.tgz here as soon as '
                           'they are written (a GPU machine\'s $OUT).')
  args = parser.parse_args(argv)
  if args.smoke and args.platform == 'gpu':
    parser.error('--smoke runs on the CPU: it takes --platform=cpu or any')
  args.argv = argv
  return args


def _data_overrides(args, scale: Scale, wheels: Path, work: Path) -> dict[str, Any]:
  archive = Path(args.data).absolute() if args.data else default_archive(wheels)
  if args.data and not archive.is_file():
    raise BadInput(f'--data={args.data} does not exist')
  if scale is SMOKE:
    if archive is None:
      return {'data.source': 'synthetic',
              'data.synthetic_train_size': 10 * SMOKE_IMAGES_PER_CLASS,
              'data.val_size': SMOKE_VAL_SIZE}
    archive = smoke_archive(archive, work / 'smoke_data' / 'cifar10-smoke.tar',
                            SMOKE_IMAGES_PER_CLASS)
    return {'data.source': 'folder', 'data.path': str(archive),
            'data.cache_dir': str(work / 'cache'), 'data.val_size': SMOKE_VAL_SIZE}
  if archive is None:
    raise BadInput(f'no CIFAR-10 archive: pass --data, or put {ARCHIVE} in {wheels} '
                   '(benchmarks/prepare_offline.sh) or in ../shared/data/')
  return {'data.source': 'folder', 'data.path': str(archive),
          'data.cache_dir': str(work / 'cache')}


def preflight(runner: Runner, platform: str) -> None:
  """`benchmarks.preflight` (versions, flax.nnx, devices) into work/preflight.json;
  BadInput with its one line where it fails."""
  runner.work.mkdir(parents=True, exist_ok=True)
  done = subprocess.run([sys.executable, '-m', 'benchmarks.preflight', f'--platform={platform}',
                         f'--out={runner.work / "preflight.json"}'], cwd=REPO, env=runner.env,
                        capture_output=True, text=True, check=False)
  if runner.mirror is not None:
    mirror(runner.out, runner.mirror)
  lines = done.stdout.strip().splitlines() + done.stderr.strip().splitlines()
  errors = [line for line in lines if line.startswith('error:')]
  if done.returncode:
    raise BadInput((errors or lines or [f'preflight: exit status {done.returncode}'])[-1]
                   .removeprefix('error: '))
  for line in done.stdout.strip().splitlines():
    runner.log(line)


def main(argv: list[str]) -> int:
  start = time.monotonic()
  args = parse_args(argv)
  out = Path(args.out).absolute()
  out.mkdir(parents=True, exist_ok=True)
  wheels = Path(args.wheels).absolute() if args.wheels else REPO / DEFAULT_WHEELS
  log = lambda line: print(f'reproduce: {line}', flush=True)
  try:
    installed = offline.ensure(wheels, out / 'work' / 'site', log)  # before the package
    return run(args, out, start, installed, wheels, log)
  except (RuntimeError, BadInput) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except OSError as e:  # an --out or --mirror folder that cannot be written
    print(f'error: could not write {e.filename or "to disk"}: {e.strerror or e}',
          file=sys.stderr)
    return 1


def run(args: argparse.Namespace, out: Path, start: float, installed: list[str],
        wheels: Path, log: Callable[[str], None]) -> int:
  """The plan, then summary.md; the exit status (128 + N when stopped by signal N)."""
  scale = SMOKE if args.smoke else FULL
  work = out / 'work'
  # JAX's persistent compilation cache beside the run (the machine's home may be
  # small): later processes of a program (evaluations, seeds, resumes) load it instead
  # of compiling; benchmarks.benchmark turns it off for its cold compile times.
  env = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': str(work / 'jax_cache')}
  if scale is SMOKE:  # both frameworks on the CPU, even where a GPU is present
    env.update(JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='')
  elif args.platform == 'gpu':
    env['JAX_PLATFORMS'] = 'cuda'
  data = _data_overrides(args, scale, wheels, work)
  mirror_dir = Path(args.mirror).absolute() if args.mirror else None
  runner = Runner(out, scale, start, args.budget_seconds, data, env, log, mirror_dir)
  preflight(runner, args.platform)
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, runner.on_signal)
  log(f'{scale.name} run into {out}, budget {args.budget_seconds:.0f} s, data '
      f'{data.get("data.path", data["data.source"])}')
  from benchmarks import reproduce_report  # pylint: disable=g-import-not-at-top
  records = run_plan(runner, args.force)
  summary = reproduce_report.write_summary(out / SUMMARY_FILE, records, STEPS, {
      'scale': scale.name, 'budget_seconds': args.budget_seconds,
      'wall_seconds': round(time.monotonic() - start, 1), 'data': data,
      'installed_offline': installed,
      'command': shown([sys.executable, '-m', 'benchmarks.reproduce', *args.argv])})
  if mirror_dir is not None:
    mirror(out, mirror_dir)
  print(summary)
  return 128 + runner.stop_signal if runner.stop_signal is not None else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
