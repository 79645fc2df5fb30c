"""benchmarks/curves.py: epochs to a target from metrics.jsonl, charts, nothing overwritten."""

import json
import subprocess
import sys

import pytest

from benchmarks import curves

_REPO = curves.Path(__file__).resolve().parents[2]


def _run(tmp_path, name, accuracies, resumed_epoch=None):
  workdir = tmp_path / name
  workdir.mkdir()
  config = {'batch_size': 100, 'data': {'source': 'synthetic', 'path': ''}}
  (workdir / 'config.json').write_text(json.dumps(config))
  events = [{'epoch': i + 1, 'step': 10 * (i + 1), 'val_accuracy': a, 'train_accuracy': a,
             'epoch_seconds': 30.0} for i, a in enumerate(accuracies)]
  if resumed_epoch:  # a resumed run logs the epoch again: the last entry counts
    events.insert(resumed_epoch - 1, dict(events[resumed_epoch - 1], val_accuracy=0.0))
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(e) + '\n' for e in events))
  return str(workdir)


def test_epochs_to_each_target_and_the_final_scores(tmp_path):
  run = curves.read_run(_run(tmp_path, 'a', [0.5, 0.86, 0.84, 0.91], resumed_epoch=2))
  assert curves.first_reaching(run, 0.85) == (2, 2000)
  assert curves.first_reaching(run, 0.9) == (4, 4000)
  assert curves.first_reaching(run, 0.95) is None
  row = curves.summary_row(run, [0.85, 0.95])
  assert row[:4] == ['a', '4', '2 (2 k)', 'not reached']
  assert row[4:6] == ['0.9100', '0.9100'] and row[-1] == '2.0 min'


def _main(*args):
  return subprocess.run([sys.executable, '-m', 'benchmarks.curves', *args], cwd=_REPO,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_writes_the_table_and_charts_once_and_refuses_bad_runs(tmp_path):
  runs = [_run(tmp_path, 'a', [0.5, 0.9]), _run(tmp_path, 'b', [0.6, 0.8])]
  out = tmp_path / 'out'
  result = _main(*runs, f'--out={out}')
  assert result.returncode == 0, result.stderr
  assert sorted(p.name for p in out.iterdir()) == sorted(curves.FILES)
  assert '| b | 2 | not reached |' in (out / 'curves.md').read_text()
  before = (out / 'curves.md').read_text()
  result = _main(*runs, f'--out={out}')
  assert result.returncode == 2 and 'already holds' in result.stderr
  assert (out / 'curves.md').read_text() == before
  (tmp_path / 'a' / 'metrics.jsonl').write_text('{"epoch": 1, "val_acc')
  result = _main(runs[0], f'--out={tmp_path / "other"}')
  assert result.returncode == 2 and result.stderr.startswith('error: ')
  assert 'Traceback' not in result.stderr
