"""DIR/summary.md of `benchmarks.reproduce`: one table, the card, the versions, the commands."""

import datetime
import importlib.metadata
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

VERSIONED = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'torch', 'torchvision',
             'numpy', 'ml-collections')


def _version(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def _nvidia_smi(*args: str) -> str | None:
  try:
    done = subprocess.run(['nvidia-smi', *args], capture_output=True, text=True, timeout=10,
                          check=False)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str | None:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.partition(':')[2].strip()
  except OSError:
    pass
  return platform.processor() or None


def machine(records: dict[str, dict]) -> dict[str, Any]:
  """The card (nvidia-smi, else JAX's device kind) and the versions that ran."""
  speed = (records.get('speed') or {}).get('results') or {}
  jax_fields = speed.get('jax') or {}
  cards = _nvidia_smi('--query-gpu=name,memory.total,driver_version', '--format=csv,noheader')
  header = _nvidia_smi() or ''
  cuda_driver = re.search(r'CUDA Version:\s*([\d.]+)', header)
  cuda = {'driver': cuda_driver.group(1) if cuda_driver else None}
  for dist in importlib.metadata.distributions():
    name = (dist.metadata['Name'] or '').lower()
    if re.match(r'(jax[-_]cuda\d+[-_](plugin|pjrt))|(nvidia[-_]cuda[-_]runtime)', name):
      cuda[name] = dist.version
  return {
      'card': cards.splitlines() if cards else None,
      'jax_devices': (f'{jax_fields.get("device_count")}x {jax_fields.get("device_kind")} '
                      f'({jax_fields.get("platform")})' if jax_fields else None),
      'host_cpu': (speed.get('host') or {}).get('cpu_model') or _cpu_model(),
      'versions': {'python': platform.python_version(),
                   **{name: _version(name) for name in VERSIONED}},
      'cuda': cuda,
  }


def _n(x, digits=0, suffix='') -> str:
  if x is None:
    return '-'
  return f'{x:,.{digits}f}{suffix}'


def _acc(x) -> str:
  return '-' if x is None else f'{x:.4f}'


def _size(run: dict[str, Any]) -> str:
  parts = [f'{run["params"]:,} params'] if run.get('params') else []
  exports = run.get('exports') or {}
  for fmt in ('int8', 'compressed'):
    if isinstance(exports.get(fmt), dict):
      parts.append(f'{fmt} {exports[fmt]["bytes"]:,} B (acc {_acc(exports[fmt]["accuracy"])})')
  if 'not_run' in exports:
    parts.append(f'exports not run ({exports["not_run"]})')
  if run.get('checkpoint_bytes') and not exports:
    parts.append(f'checkpoint {run["checkpoint_bytes"]:,} B')
  return '; '.join(parts) or '-'


def _times(run: dict[str, Any]) -> str:
  return ' / '.join(_n(run.get(k), 1) for k in ('wall_seconds', 'compile_seconds',
                                                 'train_seconds'))


def _framework_row(name: str, fields: dict[str, Any], status: str, wall) -> list[str]:
  if 'skipped' in fields:
    return [name, status, '-', '-', f'not run: {fields["skipped"]}', '-']
  peak = (f', {100 * fields["train_fraction_of_peak"]:.1f}% of {fields["peak_tflops"]:.0f}'
          if fields.get('train_fraction_of_peak') else '')
  memory = (f'peak memory {fields["peak_memory_bytes"] / 2**30:.2f} GiB'
            if fields.get('peak_memory_bytes') else '-')
  return [name, status, '-', f'{_n(wall, 1)} / {_n(fields.get("compile_seconds"), 1)} / -',
          f'{_n(fields.get("train_images_per_second"))} ({_n(fields.get("train_tflops"), 2)} '
          f'TFLOP/s{peak})', memory]


def rows(records: dict[str, dict], steps: tuple[str, ...]) -> list[list[str]]:
  table = []
  for step in steps:
    record = records.get(step)
    if record is None:
      table.append([step, 'not reached', '-', '-', '-', '-'])
      continue
    status = record['status']
    results = record.get('results')
    if status != 'done':  # what it finished before it failed or was cut is still shown
      why = (record.get('reason') or record.get('error') or '').partition('\n')[0]
      status = f'{status}: {why}'
      if not results:
        table.append([step, status, '-', '-', '-', '-'])
        continue
    if step == 'speed':
      desc = f'speed: {results["dtype"]}, batch {results["batch_size"]}'
      table.append(_framework_row(f'{desc}, JAX', results['jax'], status,
                                  record['wall_seconds']))
      torch = _framework_row('speed: PyTorch reference', results['torch'], status, None)
      ratio = results.get('jax_over_torch_images_per_second')
      if ratio:
        torch[4] += f'; JAX / PyTorch {ratio:.2f}x'
      table.append(torch)
    elif step in ('squeezenet', 'alexnet'):
      table.append([f'{step}: {results["config"]}', status,
                    f'{_acc(results.get("val_accuracy"))} / {_acc(results.get("val_accuracy_tta"))}',
                    _times(results), _n(results.get('images_per_second')), _size(results)])
    elif step == 'seeds':
      for run in results.get('runs', []):
        table.append([f'seeds: seed {run.get("seed")}', status,
                      f'{_acc(run.get("val_accuracy"))} / {_acc(run.get("val_accuracy_tta"))}',
                      _times(run), _n(run.get('images_per_second')), '-'])
      over = results.get('over_three') or {}
      plain, tta = over.get('val_accuracy', {}), over.get('val_accuracy_tta', {})
      if plain.get('n'):
        table.append([f'seeds: mean ± std over {plain["n"]} (seeds {over["seeds"]})', status,
                      f'{_acc(plain["mean"])} ± {_acc(plain["std"])} / '
                      f'{_acc(tta.get("mean"))} ± {_acc(tta.get("std"))}', '-', '-', '-'])
    else:
      for point in results.get('points', []):
        table.append([f'{step}: {point["name"]}', status, f'{_acc(point.get("val_accuracy"))} / -',
                      f'- / - / {_n(point.get("train_seconds"), 1)}',
                      _n(point.get('images_per_second')), _size(point)])
      for name in results.get('pending', []):
        table.append([f'{step}: {name}', 'not finished', '-', '-', '-', '-'])
  return table


def markdown(records: dict[str, dict], steps: tuple[str, ...], meta: dict[str, Any],
             info: dict[str, Any]) -> str:
  header = ['Step', 'Status', 'Val. accuracy (plain / TTA)', 'Wall / compile / train s',
            'Train images/s', 'Size']
  lines = [f'# Reproduction ({meta["scale"]} run)', '',
           f'- Card: {"; ".join(info["card"]) if info["card"] else "no nvidia-smi"}; '
           f'JAX devices: {info["jax_devices"] or "-"}; host CPU: {info["host_cpu"] or "-"}',
           '- Versions: ' + ', '.join(f'{k} {v}' for k, v in info['versions'].items()
                                      if v is not None),
           '- CUDA: ' + (', '.join(f'{k} {v}' for k, v in info['cuda'].items() if v)
                         or 'none found'),
           f'- Steps took {_n(sum(r.get("wall_seconds") or 0 for r in records.values()))} s'
           f' in all; the last invocation {meta["wall_seconds"]:.0f} s of its budget of '
           f'{meta["budget_seconds"]:.0f} s, ending '
           f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: '
           f'`{meta["command"]}`',
           f'- Data: {meta["data"].get("data.path", meta["data"]["data.source"])}'
           + (f'; installed offline: {", ".join(meta["installed_offline"])}'
              if meta['installed_offline'] else ''),
           '', '| ' + ' | '.join(header) + ' |', '|---|---|---:|---:|---:|---|']
  lines += ['| ' + ' | '.join(cell.replace('|', '\\|') for cell in row) + ' |'
            for row in rows(records, steps)]
  lines += ['', 'TTA: validation logits averaged with those of the mirrored images '
            '(`eval_tta`, scored by the training run itself).']
  lines += ['', '## Commands', '']
  for step in steps:
    record = records.get(step)
    if record and record.get('commands'):
      lines += [f'{step} ({record["status"]}, estimated {_n(record.get("estimate_seconds"))} s,'
                f' took {_n(record.get("wall_seconds"))} s):', '', '```']
      lines += [c['command'] for c in record['commands']]
      lines += ['```', '']
  return '\n'.join(lines).rstrip() + '\n'


def write_summary(path: Path, records: dict[str, dict], steps: tuple[str, ...],
                  meta: dict[str, Any]) -> str:
  """Writes the summary atomically; returns its text."""
  text = markdown(records, steps, meta, machine(records))
  tmp = path.with_name(f'.{path.name}.tmp')
  tmp.write_text(text)
  tmp.replace(path)
  return text
