"""The recipe ablation behind configs/squeezenet_best.py: one change at a time.

`get_sweep('r1')` changes one field of the default recipe per point; later rounds start
from the previous round's winners. Run on the 10,000-image proxy, e.g.
`--config.data.limit=10000 --config.num_epochs=10` (docs/recipe.md).
"""

from configs import default

# Each round: the fields it starts from (the previous rounds' winners), then one
# change per point.
_ROUNDS = {
    # The classic recipe (configs/default.py).
    'r1': ({}, [
        {},
        {'model.dropout': 0.0},
        {'model.bypass': 'simple'},
        {'label_smoothing': 0.2},
    ]),
    # Without the ReLU on conv10's output: r1's bypass point stalled at 21% (classes
    # whose logits the ReLU holds at 0 get no gradient).
    'r2': ({'model.classifier_relu': False}, [
        {},
        {'model.bypass': 'simple'},
        {'model.dropout': 0.0},
        {'learning_rate': 0.2},
        {'batch_size': 256},
        {'weight_decay': 1e-3},
        {'seed': 1},  # the base point again: seed noise
        {'seed': 2},
    ]),
    # From configs/squeezenet_best.py's training fields (r1 and r2's winners): the
    # full-scale run underfits (train accuracy 0.905 at epoch 30), so each point eases
    # the regularisation or adds steps; seeds 1 and 2 of the base measure the noise.
    'r3': ({'model.classifier_relu': False, 'model.dropout': 0.0,
            'label_smoothing': 0.2, 'batch_size': 256}, [
        {},
        {'seed': 1},
        {'seed': 2},
        {'batch_size': 128},
        {'learning_rate': 0.2},
        {'lr_schedule': 'linear'},
        {'weight_decay': 2.5e-4},
        {'augment.crop_padding': 2},
    ]),
    # Round 3's base again, with the changes that came as new fields.
    'r4': ({'model.classifier_relu': False, 'model.dropout': 0.0,
            'label_smoothing': 0.2, 'batch_size': 256}, [
        {},
        {'augment.alternating_flip': True},
        {'model.stem_pool': False},  # same parameters, about 4x the MACs
    ]),
    # From configs/squeezenet_best.py's training (round 3's base at batch 128): airbench's
    # BatchNorm-bias learning rate (its x64, and x8).
    'r5': ({'model.classifier_relu': False, 'model.dropout': 0.0,
            'label_smoothing': 0.2, 'batch_size': 128}, [
        {},
        {'bn_bias_lr_scale': 8.0},
        {'bn_bias_lr_scale': 64.0},
    ]),
    # From configs/squeezenet_best.py as it is (no pool after conv1, batch 128): the
    # full-scale run fits its training data (train accuracy 0.948 against 0.879 on
    # validation), so each point regularises, averages or takes a larger step.
    'r6': ({'model.classifier_relu': False, 'model.dropout': 0.0,
            'label_smoothing': 0.2, 'batch_size': 128, 'model.stem_pool': False}, [
        {},
        {'augment.alternating_flip': True},
        {'weight_decay': 1e-3},
        {'learning_rate': 0.2},
        # The model an average of the weights: horizons 1 / (1 - decay) of 50 and 200
        # steps, 0.6 and 2.6 of the proxy's epochs (78 steps each).
        {'ema_decay': 0.98},
        {'ema_decay': 0.995},
        {'seed': 1},  # the base point again: seed noise
    ]),
}


def get_config(round_name=None):
  del round_name  # the round only chooses the points
  return default.get_config()


def get_sweep(round_name='r1'):
  base, changes = _ROUNDS[round_name]
  points = []
  for change in changes:
    name = ','.join(f'{k}={v}' for k, v in change.items()) or 'base'
    points.append({'name': name, **base, **change})
  return points
