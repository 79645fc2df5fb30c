"""Progress lines inside long (stepped) epochs."""

import types

from absl import logging

from squeezenet_jax.training import progress


def test_progress_lines_name_step_rate_and_eta(monkeypatch):
  lines = []
  monkeypatch.setattr(logging, 'info', lambda fmt, *args: lines.append(fmt % args))
  monkeypatch.setattr(progress, 'INTERVAL_SECONDS', 0.0)
  on_step = progress.EpochProgress(epoch=2, num_epochs=5, steps=4, batch_size=8)
  state = types.SimpleNamespace(step=0)
  for step in range(1, 5):
    on_step(step, state)
  assert len(lines) == 3  # none for the last step: the epoch line follows it
  assert lines[0].startswith('epoch 2/5  step 1/4 (25%)') and 'img/s  epoch eta' in lines[0]


def test_no_progress_line_within_the_interval(monkeypatch):
  lines = []
  monkeypatch.setattr(logging, 'info', lambda fmt, *args: lines.append(fmt % args))
  on_step = progress.EpochProgress(epoch=1, num_epochs=1, steps=100, batch_size=8)
  for step in range(1, 100):
    on_step(step, None)
  assert not lines
