"""Data parallelism with `jax.sharding`: one `data` mesh axis over every device.

Parameters and the device-resident dataset are replicated; each batch is split on
`data`. XLA's SPMD partitioner then inserts the gradient all-reduce (and the
cross-device BatchNorm means), so the math equals a single-device run of the same
global batch.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from squeezenet_jax.errors import UserError

DATA_AXIS = 'data'


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
  """Shards axis `leading_axes` (the batch axis) over `data`, e.g. 1 for (steps, batch)."""
  return NamedSharding(mesh, P(*([None] * leading_axes), DATA_AXIS))


def check_batch_size(name: str, batch_size: int, mesh: Mesh) -> None:
  num_devices = mesh.devices.size
  if batch_size <= 0 or batch_size % num_devices:
    raise UserError(
        f'{name}={batch_size} must be a positive multiple of the device count '
        f'({num_devices}) to split on the `{DATA_AXIS}` mesh axis')


def put(tree, target: NamedSharding):
  """Host arrays -> global arrays on `target`, in single- and multi-process runs alike.

  Every process holds the same host data (the whole dataset, the same seeded init),
  and each fills only the shards of its own devices, so nothing crosses hosts.
  """

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, target, lambda index: x[index])

  return jax.tree.map(one, tree)


def to_host(tree):
  """Replicated global arrays -> numpy, reading this process's own copy."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
