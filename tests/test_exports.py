"""The exports folder changes only as a whole: a commit cut anywhere leaves one set."""

import json
import os

import pytest

from squeezenet_jax import exports
from squeezenet_jax.errors import UserError


def _commit(workdir, contents, crash_after_replaces=None, crash_in_report=False,
            crash_after_report=False):
  """Writes `contents` ({format: text}) as one export; optionally dies part way."""
  transaction = exports.Transaction(workdir)
  for fmt, text in contents.items():
    (transaction.directory(fmt) / 'model').write_text(text)
  replaces = []
  real_replace = os.replace

  def replace(src, dst):
    if crash_after_replaces is not None and len(replaces) == crash_after_replaces:
      raise KeyboardInterrupt  # the process dies here
    replaces.append(src)
    real_replace(src, dst)

  def write_report(export_id):
    if crash_in_report:
      raise KeyboardInterrupt
    (workdir / exports.SIZES_FILE).write_text(json.dumps(
        {exports.ID_KEY: export_id, 'formats': [{'format': f} for f in contents]}))
    if crash_after_report:
      raise KeyboardInterrupt  # before the old folders and the journal are removed

  os.replace, real_recover = replace, exports.recover
  exports.recover = lambda workdir: None  # killed: no handler of the process runs
  try:
    transaction.commit(write_report, list(contents))
  finally:
    os.replace, exports.recover = real_replace, real_recover
  return len(replaces)


def _on_disk(workdir):
  root = exports.exports_dir(workdir)
  return {fmt: (root / fmt / 'model').read_text() for fmt in exports.formats_on_disk(workdir)}


def _reported(workdir):
  report = json.loads((workdir / exports.SIZES_FILE).read_text())
  return {row['format'] for row in report['formats']}


OLD = {'float32': 'old', 'int8': 'old', 'onnx': 'old'}
NEW = {'float32': 'new', 'int8': 'new', 'stablehlo': 'new'}


@pytest.mark.parametrize('replaces', range(7))  # the journal, then 6 folder moves
def test_a_commit_cut_before_its_report_rolls_back_to_the_previous_set(tmp_path, replaces):
  _commit(tmp_path, OLD)
  with pytest.raises(KeyboardInterrupt):
    _commit(tmp_path, NEW, crash_after_replaces=replaces)
  if replaces == 0:  # cut while writing the journal: nothing was moved yet
    exports.check_complete(tmp_path)
  else:
    with pytest.raises(UserError, match='interrupted'):
      exports.check_complete(tmp_path)  # what predict meets before the next export
  exports.recover(tmp_path)
  assert _on_disk(tmp_path) == OLD and _reported(tmp_path) == set(OLD)
  exports.check_complete(tmp_path)


def test_a_commit_cut_after_its_report_keeps_the_new_set(tmp_path):
  _commit(tmp_path, OLD)
  with pytest.raises(KeyboardInterrupt):
    _commit(tmp_path, NEW, crash_after_report=True)
  exports.check_complete(tmp_path)  # committed: readable as it is
  exports.recover(tmp_path)
  assert _on_disk(tmp_path) == NEW and _reported(tmp_path) == set(NEW)
  assert sorted(p.name for p in exports.exports_dir(tmp_path).iterdir()) == sorted(NEW)


def test_a_transaction_never_committed_changes_nothing(tmp_path):
  _commit(tmp_path, OLD)
  transaction = exports.Transaction(tmp_path)
  (transaction.directory('float32') / 'model').write_text('half')
  exports.Transaction(tmp_path)  # the next export, after a kill -9
  assert _on_disk(tmp_path) == OLD


def test_a_report_cut_while_written_rolls_back(tmp_path):
  _commit(tmp_path, OLD)
  with pytest.raises(KeyboardInterrupt):
    _commit(tmp_path, NEW, crash_in_report=True)
  exports.recover(tmp_path)
  assert _on_disk(tmp_path) == OLD


def test_formats_the_report_leaves_out_are_removed(tmp_path):
  _commit(tmp_path, OLD)
  _commit(tmp_path, {'float32': 'new'})
  assert _on_disk(tmp_path) == {'float32': 'new'}


def test_a_commit_that_fails_rolls_back_at_once(tmp_path, monkeypatch):
  _commit(tmp_path, OLD)
  transaction = exports.Transaction(tmp_path)
  (transaction.directory('float32') / 'model').write_text('new')

  def full_disk(export_id):
    raise OSError(28, 'No space left on device')

  with pytest.raises(OSError):
    transaction.commit(full_disk, ['float32'])
  exports.check_complete(tmp_path)
  assert _on_disk(tmp_path) == OLD
