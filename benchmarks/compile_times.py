"""Cold compile seconds of each sweep point's programs: init, the training epoch, eval.

  python -m benchmarks.compile_times [--sweep=configs/sweeps/bypass.py] [--points=a,b]
      [--out=FILE.json]

For `configs/default.py` and every point of the sweep (the model and batch sizes of
the real configs, on a few synthetic images: only compilation is timed), with the
compilation cache off: `trainer_lib.init_model`'s program compiled with its
`INIT_COMPILER_OPTIONS` and with XLA's defaults (the values of both are compared bit
for bit), the Trainer's epoch (`compile_epoch`) and the Scorer's evaluation. Run it
under each Python / jax to compare releases; the JSON names the versions and the load.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time

import flax
import jax
import numpy as np
from flax import nnx

from configs import default
from squeezenet_jax import models
from squeezenet_jax import rng
from squeezenet_jax import sweeps
from squeezenet_jax.training import trainer as trainer_lib


def _synthetic(config):
  """One training step and one evaluation batch of synthetic images."""
  config.data.source = 'synthetic'
  config.data.val_size = config.eval_batch_size
  config.data.synthetic_train_size = config.batch_size + config.data.val_size
  return config


def _init_seconds(config, options) -> tuple[float, list[np.ndarray]]:
  def init(key):
    model = models.create_model(config, rngs=nnx.Rngs(params=key))
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return params, batch_stats

  key = rng.streams(rng.root_key(config.seed)).init
  start = time.perf_counter()
  compiled = jax.jit(init).lower(key).compile(options)
  seconds = time.perf_counter() - start
  return seconds, [np.asarray(x) for x in jax.tree.leaves(compiled(key))]


def point_times(config) -> dict[str, float | bool]:
  tuned, tuned_values = _init_seconds(config, trainer_lib.INIT_COMPILER_OPTIONS)
  plain, plain_values = _init_seconds(config, None)
  trainer = trainer_lib.Trainer(config, trainer_lib.load_data(config, ('train', 'validation')))
  _, epoch = trainer.compile_epoch(*trainer.device_train_data())
  split = trainer.scorer.split('validation')
  variables = trainer.model_vars
  start = time.perf_counter()
  trainer.scorer._evaluate.lower(variables['params'], variables['batch_stats'],  # pylint: disable=protected-access
                                 split.images, split.labels, split.mask, tta=False).compile()
  return {'init_seconds': round(tuned, 2), 'init_seconds_xla_defaults': round(plain, 2),
          'init_values_identical': all(np.array_equal(a, b)
                                       for a, b in zip(tuned_values, plain_values)),
          'epoch_seconds': round(epoch, 2),
          'eval_seconds': round(time.perf_counter() - start, 2)}


def main(argv):
  parser = argparse.ArgumentParser(prog='python -m benchmarks.compile_times')
  parser.add_argument('--sweep', default='configs/sweeps/bypass.py')
  parser.add_argument('--points', default='',
                      help='Only these (comma-separated: default, or a point name).')
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv[1:])
  jax.config.update('jax_enable_compilation_cache', False)
  spec = importlib.util.spec_from_file_location('sweep_config', args.sweep)
  sweep_config = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sweep_config)
  named = [('default', default.get_config())]
  named += [(p.name, p.config) for p in sweeps.make_points(sweep_config.get_config(),
                                                           sweeps.load_sweep(args.sweep))]
  wanted = set(filter(None, args.points.split(',')))
  named = [(name, config) for name, config in named if not wanted or name in wanted]
  report = {'command': 'python -m benchmarks.compile_times ' + ' '.join(argv[1:]),
            'python': platform.python_version(), 'jax': jax.__version__,
            'jaxlib': importlib.metadata.version('jaxlib'),
            'flax': flax.__version__, 'backend': jax.default_backend(),
            'cpu_count': os.cpu_count(), 'load_average_1m_start': os.getloadavg()[0],
            'init_compiler_options': trainer_lib.INIT_COMPILER_OPTIONS, 'points': []}
  for name, config in named:
    row = {'point': name, **point_times(_synthetic(config))}
    print(json.dumps(row), flush=True)
    report['points'].append(row)
  report['load_average_1m_end'] = os.getloadavg()[0]
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(report, f, indent=2)
      f.write('\n')


if __name__ == '__main__':
  main(sys.argv)
