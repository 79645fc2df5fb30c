"""The run's workdir: one writer at a time, one config, files written whole.

A workdir belongs to one config. Rerunning the same command resumes it; a different
config is refused (nothing of the earlier run is touched) unless the user says so, or
unless the earlier run never finished a step (then there is nothing to keep). Whatever
writes into a workdir (train, eval, export, a sweep) holds its lock: an OS-level
`flock`, released by the kernel when the process ends, even by kill -9, so a crash
never leaves a stale lock.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_collections

from squeezenet_jax.errors import UserError
from squeezenet_jax.errors import WriteError

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'
METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'
CLASSES_FILE = 'classes.json'  # the class names labels index, for --mode=predict
LOCK_FILE = '.lock'
_LOCK_POLL_SECONDS = 0.2

# Fields (or `prefix.` groups) that change how a run is observed or exported, not
# what it trains: a resumed run may change them freely.
_OBSERVATION_FIELDS = ('eval_every_epochs', 'checkpoint_every_epochs', 'max_to_keep',
                       'eval_batch_size', 'data.cache_dir', 'data.tfds_data_dir',
                       'data.eval_split', 'eval_tta', 'eval_tta_translate', 'epoch_loop', 'profile_epoch',
                       'export.', 'compress.')


def _observation_only(field: str) -> bool:
  return any(field == f or (f.endswith('.') and field.startswith(f))
             for f in _OBSERVATION_FIELDS)


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes atomically (temp file + rename), so a crash never leaves half a file."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
  try:
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + '\n')
  except OSError as e:  # a full disk: the error names the file, not only the cause
    tmp.unlink(missing_ok=True)
    raise WriteError(f'could not write {path}: {e.strerror or e}') from None
  os.replace(tmp, path)


def merge_json(path: str | os.PathLike, updates: dict[str, Any]) -> dict[str, Any]:
  """Updates the JSON object at `path` with `updates` (keeping its other keys); returns it."""
  merged = {**(read_json(path) if Path(path).exists() else {}), **updates}
  write_json(path, merged)
  return merged


def read_json(path: str | os.PathLike) -> dict[str, Any]:
  """A JSON object written by `write_json`; anything else (cut short, not text,
  hand-edited into another shape) is one UserError naming the file."""
  try:
    value = json.loads(Path(path).read_bytes())
  except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
    raise UserError(f'{path} is not valid JSON ({e}): restore it, or move it away') from None
  if not isinstance(value, dict):
    raise UserError(f'{path} holds a JSON {type(value).__name__}, not the object written '
                    'there: restore it, or move it away')
  return value


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in d.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat


# Fields added to the config after runs were written without them, each with the
# value that trains as those runs did: a config.json lacking one means that value, so
# an earlier run still resumes, exports and compresses.
FIELDS_ADDED = {'ema_decay': 0.0, 'bn_bias_lr_scale': 1.0,
                'augment.alternating_flip': False, 'model.stem_pool': True}


def with_added_fields(saved: dict) -> dict:
  """`saved` (a config.json's dict) with the FIELDS_ADDED it lacks, in place."""
  for dotted, value in FIELDS_ADDED.items():
    *groups, name = dotted.split('.')
    node = saved
    for group in groups:
      node = node.get(group) if isinstance(node, dict) else None
    if isinstance(node, dict) and name not in node:
      node[name] = value
  return saved


def config_diff(old: dict, new: dict) -> list[str]:
  """Fields (dotted) whose values differ, ignoring observation-only fields."""
  old_flat, new_flat = _flatten(old), _flatten(new)
  return sorted(k for k in old_flat.keys() | new_flat.keys()
                if not _observation_only(k) and old_flat.get(k) != new_flat.get(k))


def has_progress(workdir: str | os.PathLike) -> bool:
  """Whether a run in `workdir` finished anything worth keeping: a checkpoint or results."""
  path = Path(workdir)
  checkpoints = path / CHECKPOINT_DIR
  saved = checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())
  return saved or (path / RESULTS_FILE).exists()


def check_claim(workdir: str, config: ml_collections.ConfigDict,
                allow_config_change: bool) -> bool:
  """Whether `workdir` may hold `config`'s run; True when its config.json needs writing.

  Raises a UserError where the workdir holds another config's run (or foreign files).
  """
  path = Path(workdir)
  config_path = path / CONFIG_FILE
  if config_path.exists():
    diff = config_diff(with_added_fields(read_json(config_path)), json.loads(config.to_json()))
    if diff and not allow_config_change and has_progress(workdir):
      shown = ', '.join(diff[:5]) + (' ...' if len(diff) > 5 else '')
      raise UserError(
          f'workdir {workdir} holds a run of another config (differs in {shown}); '
          'use a new --workdir, or pass --allow_config_change to continue it anyway')
    return bool(diff)
  if path.exists() and any(p.name not in (CONFIG_FILE, LOCK_FILE) for p in path.iterdir()):
    raise UserError(f'workdir {workdir} is not empty and holds no {CONFIG_FILE}: '
                    'refusing to write into it; choose another --workdir')
  return True


def claim(workdir: str, config: ml_collections.ConfigDict, allow_config_change: bool) -> None:
  """Creates the workdir for `config`, or checks that it already holds this config's run."""
  if check_claim(workdir, config, allow_config_change):
    write_json(Path(workdir) / CONFIG_FILE, json.loads(config.to_json()))


@contextlib.contextmanager
def locked(workdir: str | os.PathLike, purpose: str, wait_seconds: float = 0.0,
           unclaimed: str = 'keep') -> Iterator[None]:
  """Holds `workdir`'s lock for the block; a second holder gets a UserError at once, or
  once `wait_seconds` passed without the lock coming free.

  The lock file names the holder (pid, host, purpose, since), for the refusal message.
  `unclaimed='remove'`: a workdir this call created is removed again if the block
  leaves nothing in it but the lock (a start that failed before claiming it).
  """
  path = Path(workdir)
  created = not path.exists()
  try:
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserError(f'cannot write to workdir {workdir}: {e.strerror}') from None
  try:
    deadline = time.monotonic() + wait_seconds
    while True:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if time.monotonic() >= deadline:
          raise UserError(f'workdir {workdir} is in use by {_holder(fd)}; wait for it to '
                          'end, or use another --workdir') from None
        time.sleep(_LOCK_POLL_SECONDS)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({
        'pid': os.getpid(), 'host': socket.gethostname(), 'purpose': purpose,
        'since': datetime.datetime.now().isoformat(timespec='seconds')}).encode(), 0)
    yield
  finally:
    if unclaimed == 'remove' and created and os.listdir(path) == [LOCK_FILE]:
      os.unlink(path / LOCK_FILE)
      path.rmdir()
    os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
  try:
    info = json.loads(os.pread(fd, 4096, 0) or b'{}')
    return (f"pid {info['pid']} on {info['host']} ({info['purpose']}, since "
            f"{info['since']})")
  except (ValueError, KeyError):
    return 'another process'


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with, for eval and export."""
  config_path = Path(workdir) / CONFIG_FILE
  if not config_path.exists():
    raise UserError(f'{config_path} not found: is {workdir} the workdir of a train run?')
  config = ml_collections.ConfigDict(_with_tuples(with_added_fields(read_json(config_path))))
  return config


def _with_tuples(value: Any) -> Any:
  """JSON's lists as the tuples the config held (so they can be overridden again)."""
  if isinstance(value, dict):
    return {k: _with_tuples(v) for k, v in value.items()}
  return tuple(_with_tuples(v) for v in value) if isinstance(value, list) else value


def write_classes(workdir: str | os.PathLike, class_names) -> None:
  """Records the class names the run's labels index (only if they changed: a finished
  run's rerun writes nothing)."""
  path = Path(workdir) / CLASSES_FILE
  if read_classes(workdir) != list(class_names):
    write_json(path, {'class_names': list(class_names)})


def read_classes(workdir: str | os.PathLike) -> list[str] | None:
  """The class names of the run in `workdir` (None where training has not written them)."""
  path = Path(workdir) / CLASSES_FILE
  if not path.exists():
    return None
  names = read_json(path).get('class_names')
  if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)
          and len(set(names)) == len(names)):
    raise UserError(f'{path} does not hold a list of distinct class names under '
                    '"class_names": restore it, or move it away')
  return names


def checkpoint_dir(workdir: str) -> Path:
  return Path(workdir).absolute() / CHECKPOINT_DIR
