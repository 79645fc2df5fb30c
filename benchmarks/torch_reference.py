"""PyTorch reference: torchvision's SqueezeNet 1.1, trained the way the JAX trainer trains.

The images/s ratio should compare frameworks, not setups, so this mirrors squeezenet_jax/training:
the dataset lives on the device as uint8, each epoch draws a `randperm`, crops (zero
pad 4) and flips run as torch ops on the device, and the model runs
channels_last under `torch.compile`, in bf16 autocast on CUDA when config.dtype is
bfloat16, with Nesterov SGD on the same schedule and weight-decay mask, and label
smoothing.

The model is torchvision's `squeezenet1_1` with the config's stem (`cifar`: features[0]
becomes a 3x3 stride-1 padding-1 conv with 64 filters) and, as with model.batch_norm,
BatchNorm2d after every conv but the classifier's. Where torchvision cannot be imported
(or the config's fire widths are not 1.1's) a layer-for-layer local copy stands in; the
report says which in `model_source`.

torch is imported lazily: the JAX benchmark runs without it.
"""

import copy
import importlib
from typing import Any

import ml_collections
import numpy as np

from squeezenet_jax.data import augment
from squeezenet_jax import models
from squeezenet_jax.training import optim

COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'none')
TORCHVISION = 'torchvision'
LOCAL_COPY = 'local copy of torchvision squeezenet1_1'
# torchvision squeezenet1_1's fires: (squeeze, expand1x1, expand3x3), fire2..fire9.
_V11_FIRES = [(16, 64, 64)] * 2 + [(32, 128, 128)] * 2 + [(48, 192, 192)] * 2 + [
    (64, 256, 256)] * 2
_POOL_AFTER_FIRE = (3, 5)  # squeezenet1_1's max pools, besides the one after conv1


class Unsupported(Exception):
  """The config asks for something the reference does not model."""


def unavailable_reason() -> str | None:
  """Why the reference cannot run here, or None when torch imports."""
  try:
    importlib.import_module('torch')
  except Exception as e:  # pylint: disable=broad-except  # ImportError, broken wheels
    return (f'torch is not importable ({type(e).__name__}: {e}); install torch '
            '(and optionally torchvision) in this environment to run the reference')
  return None


def _check_supported(config: ml_collections.ConfigDict) -> None:
  m = config.model
  if (m.name, m.version, m.bypass, m.classifier_relu, m.stem_pool) != (
      'squeezenet', '1.1', 'none', True, True):
    raise Unsupported(f'the torch reference is SqueezeNet 1.1 without bypass, with the '
                      f'classifier ReLU and the stem pool; got {m.name} {m.version} '
                      f'bypass={m.bypass} classifier_relu={m.classifier_relu} '
                      f'stem_pool={m.stem_pool}')


def _local_squeezenet(fires: list[tuple[int, int, int]], num_classes: int,
                      dropout: float):
  """torchvision's SqueezeNet(version='1_1'), layer for layer, with the given fire widths."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class Fire(nn.Module):

    def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
      super().__init__()
      self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
      self.squeeze_activation = nn.ReLU(inplace=True)
      self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
      self.expand1x1_activation = nn.ReLU(inplace=True)
      self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
      self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
      x = self.squeeze_activation(self.squeeze(x))
      return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                        self.expand3x3_activation(self.expand3x3(x))], 1)

  class SqueezeNet(nn.Module):

    def __init__(self):
      super().__init__()
      layers = [nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)]
      channels = 64
      for fire, (squeeze, e1, e3) in enumerate(fires, start=2):
        layers.append(Fire(channels, squeeze, e1, e3))
        channels = e1 + e3
        if fire in _POOL_AFTER_FIRE:
          layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
      self.features = nn.Sequential(*layers)
      final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
      self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True),
                                      nn.AdaptiveAvgPool2d((1, 1)))
      for m in self.modules():
        if isinstance(m, nn.Conv2d):
          if m is final_conv:
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
          else:
            nn.init.kaiming_uniform_(m.weight)
          if m.bias is not None:
            nn.init.constant_(m.bias, 0)

    def forward(self, x):
      return self.classifier(self.features(x)).flatten(1)

  return SqueezeNet()


def _conv(in_channels, out_channels, kernel, stride, padding, bias):
  """A conv initialised as torchvision initialises SqueezeNet's feature convs."""
  from torch import nn  # pylint: disable=g-import-not-at-top
  conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding,
                   bias=bias)
  nn.init.kaiming_uniform_(conv.weight)
  if bias:
    nn.init.constant_(conv.bias, 0)
  return conv


def _add_batch_norm(module) -> None:
  """Conv -> Conv (no bias) + BatchNorm2d in place, as our ConvUnit does with batch_norm."""
  from torch import nn  # pylint: disable=g-import-not-at-top
  for name, child in module.named_children():
    if isinstance(child, nn.Conv2d):
      conv = _conv(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                   child.padding, bias=False)
      setattr(module, name, nn.Sequential(conv, nn.BatchNorm2d(child.out_channels)))
    else:
      _add_batch_norm(child)


def build_model(config: ml_collections.ConfigDict) -> tuple[Any, str]:
  """The reference model for `config` and where it came from (`model_source`)."""
  _check_supported(config)
  m = config.model
  fires = models.fire_widths(m)
  try:
    torchvision_models = importlib.import_module('torchvision.models')
  except Exception:  # pylint: disable=broad-except  # absent, or built for another torch
    torchvision_models = None
  if torchvision_models is not None and fires == _V11_FIRES:
    model = torchvision_models.squeezenet1_1(num_classes=m.num_classes, dropout=m.dropout)
    source = TORCHVISION
  else:
    model = _local_squeezenet(fires, m.num_classes, m.dropout)
    source = LOCAL_COPY
  if m.stem == 'cifar':
    model.features[0] = _conv(3, 64, 3, stride=1, padding=1, bias=True)
  if m.batch_norm:
    _add_batch_norm(model.features)  # the classifier's conv10 keeps its bias and no BN
  return model, source


def random_crop_flip(torch, images, padding: int, flip: bool):
  """augment.random_crop_flip in torch: per-image crops of the zero-padded batch, flips."""
  batch, height, width, _ = images.shape
  device = images.device
  if padding:
    padded = torch.nn.functional.pad(images, (0, 0, padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (batch, 2), device=device)
    rows = offsets[:, :1] + torch.arange(height, device=device)
    cols = offsets[:, 1:] + torch.arange(width, device=device)
    images = padded[torch.arange(batch, device=device)[:, None, None], rows[:, :, None],
                    cols[:, None, :]]
  if flip:
    mirrored = torch.rand(batch, device=device) < 0.5
    images = torch.where(mirrored[:, None, None, None], images.flip(2), images)
  return images


class TorchRunner:
  """The benchmark's runner (reset, train_epoch, evaluate) for the PyTorch reference."""

  aot_compile_seconds = 0.0  # torch.compile compiles on the first calls

  def __init__(self, config: ml_collections.ConfigDict, train_split, val_split,
               compile_mode: str = 'default'):
    import torch  # pylint: disable=g-import-not-at-top
    if compile_mode not in COMPILE_MODES:
      raise ValueError(f'compile_mode {compile_mode!r} not in {COMPILE_MODES}')
    self.torch = torch
    self.config = config
    self.device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    self.autocast = config.dtype == 'bfloat16' and self.device.type == 'cuda'
    if self.device.type == 'cuda':
      torch.backends.cudnn.benchmark = True
      torch.set_float32_matmul_precision('high')  # TF32, as XLA's default precision
    torch.manual_seed(config.seed)
    self.model, self.model_source = build_model(config)
    self.model.to(self.device, memory_format=torch.channels_last)
    self._initial = copy.deepcopy(self.model.state_dict())
    self.images = torch.from_numpy(train_split.images).to(self.device)
    self.labels = torch.from_numpy(train_split.labels.astype(np.int64)).to(self.device)
    self.steps = len(train_split.labels) // config.batch_size
    self.images_per_epoch = self.steps * config.batch_size
    self._val = self._eval_batches(val_split)
    self.eval_images = len(val_split.labels)
    mean, std = augment.statistics(config.data)
    self.mean = torch.tensor(mean, device=self.device)
    self.std = torch.tensor(std, device=self.device)
    total = max(1, config.num_epochs * self.steps)
    self.learning_rates = np.asarray(optim.make_schedule(config, self.steps)(np.arange(total)))
    wrap = (lambda f: f) if compile_mode == 'none' else (
        lambda f: torch.compile(f, mode=None if compile_mode == 'default' else compile_mode))
    self._train_forward = wrap(self._forward_loss)
    self._eval_forward = wrap(self._logits)
    self.compile_mode = compile_mode
    self.reset()

  def _eval_batches(self, split):
    """Validation padded to whole eval batches (masked), as trainer.to_device_split."""
    batch, n = self.config.eval_batch_size, len(split.labels)
    num_batches = -(-n // batch)
    pad = num_batches * batch - n
    images = np.concatenate([split.images, np.zeros((pad,) + split.images.shape[1:],
                                                    np.uint8)])
    labels = np.concatenate([split.labels, np.zeros(pad, split.labels.dtype)])
    to = lambda a: self.torch.from_numpy(a.reshape((num_batches, batch) + a.shape[1:])
                                         ).to(self.device)
    return to(images), to(labels.astype(np.int64)), to(np.arange(num_batches * batch) < n)

  def reset(self) -> None:
    """Initial weights, fresh optimizer, step 0; compiled graphs are kept."""
    torch = self.torch
    self.model.load_state_dict(self._initial)
    self.model.train()
    torch.manual_seed(self.config.seed)
    decay = [p for p in self.model.parameters() if p.ndim > 1]  # as optim._decay_mask
    other = [p for p in self.model.parameters() if p.ndim <= 1]
    groups = [{'params': decay, 'weight_decay': self.config.weight_decay},
              {'params': other, 'weight_decay': 0.0}]
    fused = {'fused': True} if self.device.type == 'cuda' else {}
    self.optimizer = torch.optim.SGD(groups, lr=0.0, momentum=self.config.momentum,
                                     nesterov=True, **fused)
    self.step = 0

  def _logits(self, images):
    """uint8 NHWC batch -> float logits (NHWC memory already is channels_last NCHW)."""
    torch = self.torch
    x = ((images.float() - self.mean) / self.std).permute(0, 3, 1, 2)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
      return self.model(x).float()

  def _forward_loss(self, images, labels, idx):
    cfg = self.config
    x = random_crop_flip(self.torch, images[idx], cfg.augment.crop_padding, cfg.augment.flip)
    y = labels[idx]
    logits = self._logits(x)
    loss = self.torch.nn.functional.cross_entropy(logits, y,
                                                  label_smoothing=cfg.label_smoothing)
    return loss, (logits.argmax(1) == y).sum()

  def _sync(self) -> None:
    if self.device.type == 'cuda':
      self.torch.cuda.synchronize()

  def train_epoch(self) -> float:
    """One epoch; returns the mean train loss once the device has finished."""
    torch = self.torch
    batch = self.config.batch_size
    perm = torch.randperm(self.images.shape[0], device=self.device)
    total_loss = torch.zeros((), device=self.device)
    for i in range(self.steps):
      lr = float(self.learning_rates[min(self.step, len(self.learning_rates) - 1)])
      for group in self.optimizer.param_groups:
        group['lr'] = lr
      loss, _ = self._train_forward(self.images, self.labels, perm[i * batch:(i + 1) * batch])
      loss.backward()
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
      total_loss += loss.detach()
      self.step += 1
    self._sync()
    return float(total_loss) / self.steps

  def evaluate(self) -> float:
    """Validation accuracy (BN running statistics, no dropout)."""
    torch = self.torch
    images, labels, mask = self._val
    correct = torch.zeros((), dtype=torch.int64, device=self.device)
    self.model.eval()
    with torch.no_grad():
      for i in range(images.shape[0]):
        logits = self._eval_forward(images[i])
        correct += ((logits.argmax(1) == labels[i]) & mask[i]).sum()
    self.model.train()
    return int(correct) / self.eval_images

  def device_fields(self) -> dict[str, Any]:
    torch = self.torch
    cuda = self.device.type == 'cuda'
    return {
        'device_kind': torch.cuda.get_device_name(0) if cuda else 'cpu',
        'device_count': 1,
        'platform': self.device.type,
        'peak_memory_bytes': int(torch.cuda.max_memory_allocated()) if cuda else None,
        'torch_version': torch.__version__,
        'torchvision_version': _torchvision_version(),
        'model_source': self.model_source,
        'compile_mode': self.compile_mode,
        'autocast_bfloat16': self.autocast,
        'threads': torch.get_num_threads(),
    }


def _torchvision_version() -> str | None:
  try:
    return importlib.import_module('torchvision').__version__
  except Exception:  # pylint: disable=broad-except
    return None


def fresh_compile_cache():
  """A block with an empty, temporary inductor/triton cache, so torch.compile runs cold.

  The JAX side runs without a compilation cache too; both compile times are first-run.
  """
  utils = importlib.import_module('torch._inductor.utils')
  return (getattr(utils, 'fresh_cache', None) or utils.fresh_inductor_cache)()
