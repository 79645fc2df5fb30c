"""The random streams of a run, split once from `config.seed`; documented here only.

    root = PRNGKey(seed)                  (kept in checkpoints as `progress.rng`)
    init, shuffle, augment, dropout = split(root, 4)

    parameter initialisation   nnx.Rngs(params=init)
    epoch e's example order    fold_in(shuffle, e)
    step s's crops and flips   fold_in(augment, s)
    image i's first mirror     fold_in(fold_in(augment, 2**32 - 1), i)  (alternating flip;
                               a step number no run reaches)
    step s's dropout masks     fold_in(dropout, s)

No two streams share a key, and every draw depends only on (seed, epoch) or (seed,
step), so a run resumed from a checkpoint draws exactly what an uninterrupted run
draws, and a change to one stream (say, a new augmentation) leaves the others alone.
"""

from typing import NamedTuple

import jax


class Streams(NamedTuple):
  init: jax.Array
  shuffle: jax.Array
  augment: jax.Array
  dropout: jax.Array


def root_key(seed: int) -> jax.Array:
  return jax.random.PRNGKey(seed)


def streams(root: jax.Array) -> Streams:
  """The four independent streams under `root` (cheap: call it inside jitted code)."""
  return Streams(*jax.random.split(root, len(Streams._fields)))


def epoch_key(root: jax.Array, epoch) -> jax.Array:
  return jax.random.fold_in(streams(root).shuffle, epoch)


def flip_key(root: jax.Array) -> jax.Array:
  """The key of each image's first-epoch mirror under `augment.alternating_flip`."""
  return jax.random.fold_in(streams(root).augment, 2**32 - 1)


def step_keys(root: jax.Array, step) -> tuple[jax.Array, jax.Array]:
  """(augment, dropout) keys of one training step."""
  s = streams(root)
  return jax.random.fold_in(s.augment, step), jax.random.fold_in(s.dropout, step)
