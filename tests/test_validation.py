"""Every config field is checked against its allowed values before anything runs."""

import pytest

from conftest import tiny_config
from configs import default
from squeezenet_jax import config_utils
from squeezenet_jax import models
from squeezenet_jax.compression import container
from squeezenet_jax.compression import plan
from squeezenet_jax.compression import pruning
from squeezenet_jax.data import sources
from squeezenet_jax.training import optim
from squeezenet_jax.training import steps
from squeezenet_jax import validation
from squeezenet_jax.errors import UserError


@pytest.mark.parametrize('field, value, allowed', [
    ('num_epochs', -1, 'an integer >= 1'),
    ('num_epochs', 0, 'an integer >= 1'),
    ('learning_rate', -1.0, 'a number > 0'),
    ('learning_rate', float('nan'), 'a number > 0'),
    ('batch_size', 0, 'an integer >= 1'),
    ('eval_batch_size', -8, 'an integer >= 1'),
    ('label_smoothing', 1.0, 'a number in [0, 1)'),
    ('ema_decay', 1.0, 'a number in [0, 1)'),
    ('ema_decay', -0.1, 'a number in [0, 1)'),
    ('model.dropout', 1.0, 'a number in [0, 1)'),
    ('warmup_epochs', -0.5, 'a number >= 0'),
    ('weight_decay', -1e-4, 'a number >= 0'),
    ('eval_every_epochs', 0, 'an integer >= 1'),
    ('checkpoint_every_epochs', 0, 'an integer >= 1'),
    ('max_to_keep', 0, 'an integer >= 1'),
    ('momentum', 1.5, 'a number in [0, 1)'),
    ('data.limit', -1, 'an integer >= 0'),
    ('data.std', (1.0, 0.0, 1.0), '3 positive numbers'),
    ('model.bypass', 'weird', 'one of none, simple, complex'),
    ('export.bits', 9, 'an integer from 1 to 8'),
    ('export.bits', 0, 'an integer from 1 to 8'),
    ('export.prune_fraction', 1.0, 'a number in [0, 1)'),
    ('export.prune_fraction', -0.1, 'a number in [0, 1)'),
])
def test_a_field_out_of_range_names_field_value_and_range(field, value, allowed):
  config = tiny_config()
  config_utils.set_field(config, field, value)
  with pytest.raises(UserError) as error:
    validation.validate(config)
  message = str(error.value)
  assert f'{field}={value!r}' in message and allowed in message and '\n' not in message


def test_alternating_flip_without_flip_is_refused():
  config = tiny_config(**{'augment.alternating_flip': True, 'augment.flip': False})
  with pytest.raises(UserError, match='augment.alternating_flip=True needs augment.flip'):
    validation.validate(config)
  config.augment.flip = True
  validation.validate(config)


def test_shipped_configs_are_valid():
  validation.validate(default.get_config())
  validation.validate(tiny_config())


def test_every_rule_names_a_real_field():
  assert set(validation.RULES) <= set(config_utils.field_names(default.get_config()))


@pytest.mark.parametrize('field, owner', [
    ('model.name', tuple(models.MODELS)), ('model.version', models.VERSIONS),
    ('model.stem', models.STEMS), ('model.bypass', models.BYPASSES),
    ('dtype', tuple(models.DTYPES)), ('data.source', sources.SOURCES),
    ('optimizer', optim.OPTIMIZERS), ('lr_schedule', optim.SCHEDULES),
    ('epoch_loop', steps.EPOCH_LOOPS), ('compress.coding', container.CODINGS),
    ('compress.vector_dtype', container.RAW_DTYPES),
])
def test_a_choice_is_checked_against_its_owners_list(field, owner):
  for value in owner:  # each of the owner's choices passes, anything else is refused
    config = tiny_config()
    config_utils.set_field(config, field, value)
    if field == 'model.name' and value == 'alexnet':
      continue  # AlexNet is checked with its own stem rules elsewhere
    validation.validate(config)
  config = tiny_config()
  config_utils.set_field(config, field, 'no-such-choice')
  with pytest.raises(UserError, match=f"{field}='no-such-choice'.*one of {', '.join(owner)}"):
    validation.validate(config)


@pytest.mark.parametrize('field, owner', [('method', plan.METHODS), ('scope', pruning.SCOPES)])
def test_a_stage_choice_is_checked_against_its_owners_list(field, owner):
  config = tiny_config()
  config.compress.pruned[field] = 'no-such-choice'
  with pytest.raises(UserError, match=f"compress.pruned.{field}='no-such-choice'.*"
                     f"one of {', '.join(owner)}"):
    validation.validate(config)


@pytest.mark.parametrize('stage, fields, message', [
    ('qat_int4', {'bits': 3}, 'bits=3 is not allowed with method qat: it must be one of 8, 4'),
    ('pruned', {'bits': 2}, 'bits=2 is not allowed with method prune'),
    ('shared', {'bits': 9}, 'compress.shared.bits=9 is not allowed'),
    ('pruned', {'sparsity': 1.0}, 'compress.pruned.sparsity=1.0 is not allowed'),
    ('pruned', {'sparsity': 0.3, 'initial_sparsity': 0.5}, 'initial_sparsity=0.5 exceeds'),
    ('pruned', {'ramp': 1.5}, 'compress.pruned.ramp=1.5 is not allowed'),
    ('pruned', {'frequency': 0}, 'compress.pruned.frequency=0 is not allowed'),
])
def test_compression_settings_are_checked_here_alone(stage, fields, message):
  """The compression library trusts what passed here: no second check of these."""
  config = tiny_config()
  config.compress.stages = stage
  for field, value in fields.items():
    config.compress[stage][field] = value
  with pytest.raises(UserError, match=message):
    validation.validate(config)
