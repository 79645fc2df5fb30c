"""Default: SqueezeNet 1.1 with the CIFAR stem on CIFAR-10 (tfds), Nesterov SGD + cosine.

Every other config starts from this one and changes a few fields; every field can be
overridden on the command line, e.g. `--config.model.bypass=simple`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict()
  config.model.name = 'squeezenet'  # squeezenet | alexnet
  config.model.version = '1.1'  # 1.0 | 1.1 (squeezenet only)
  config.model.stem = 'cifar'  # imagenet (stride-2 stem, 224x224) | cifar (stride-1, 32x32)
  config.model.bypass = 'none'  # none | simple | complex
  config.model.batch_norm = True  # without BN, SqueezeNet trains slowly and fragilely
  config.model.num_classes = 10
  config.model.dropout = 0.5
  config.model.classifier_relu = True  # squeezenet: ReLU on conv10's output (the paper's)
  # squeezenet: the 3x3/2 max pool after conv1 (the paper's); False: same parameters,
  # every later map twice as wide, about 4x the MACs.
  config.model.stem_pool = True
  # The paper's metaparameters (section 5); these defaults give v1.0's fire widths.
  config.model.base_e = 128
  config.model.incr_e = 128
  config.model.freq = 2
  config.model.pct3x3 = 0.5
  config.model.squeeze_ratio = 0.125

  config.data = ml_collections.ConfigDict()
  config.data.source = 'tfds'  # tfds | folder | synthetic
  config.data.path = ''  # folder: comma-separated dirs or .tar/.tar.gz/.tar.xz archives
  config.data.dataset = 'cifar10'  # tfds name
  config.data.tfds_data_dir = ''  # '' = tfds default (~/tensorflow_datasets)
  config.data.cache_dir = ''  # decoded folder cache; '' = $XDG_CACHE_HOME/squeezenet_jax
  config.data.image_size = 32
  # Per-channel statistics of the training images on the 0..255 scale (CIFAR-10's);
  # normalisation happens on the device, and inside exported inference graphs.
  config.data.mean = (125.307, 122.961, 113.8575)
  config.data.std = (62.985, 62.0925, 66.708)
  config.data.val_size = 5000  # held out of train when the source has no validation split
  config.data.split_seed = 0  # fixed: the held-out set never depends on `seed`
  config.data.limit = 0  # at most this many training images (0: all)
  config.data.eval_split = ''  # '' = test where one exists, else validation
  config.data.synthetic_train_size = 2048
  config.data.synthetic_eval_size = 512
  config.data.synthetic_num_classes = 10

  config.augment = ml_collections.ConfigDict()
  config.augment.crop_padding = 4  # random crop after zero-padding by this many pixels
  config.augment.flip = True
  # With flip: each image mirrored in every other epoch, a random half in the first
  # (airbench's alternating flip), instead of by chance each time.
  config.augment.alternating_flip = False

  config.optimizer = 'sgd'  # sgd (Nesterov momentum) | adamw
  config.learning_rate = 0.1  # peak, for a batch of `batch_size`
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.label_smoothing = 0.1
  # BatchNorm offsets' learning rate as a multiple of the schedule's (airbench's BN-bias
  # learning rate); 1: the same as every other parameter's.
  config.bn_bias_lr_scale = 1.0
  # > 0: the run's model is an exponential moving average of the weights (and BN
  # statistics), this decay per step; evaluation, export and predict use it.
  config.ema_decay = 0.0
  config.warmup_epochs = 1.0
  config.lr_schedule = 'cosine'  # decay after warmup: cosine | linear (to zero at the end)
  config.num_epochs = 30
  config.batch_size = 512  # global, split over all devices on the `data` mesh axis
  config.eval_batch_size = 1000
  config.dtype = 'float32'  # compute dtype: float32 | bfloat16 (params stay float32)
  config.seed = 0
  # auto | scan | python: scan compiles whole epochs (GPU/TPU); auto uses python on CPU.
  config.epoch_loop = 'auto'

  config.eval_every_epochs = 1
  config.eval_tta = False  # validation also scores mirrored images and averages logits
  # > 0: the TTA also scores both views shifted this many pixels (airbench's multi-crop)
  config.eval_tta_translate = 0
  config.checkpoint_every_epochs = 1
  config.max_to_keep = 3
  config.profile_epoch = 0  # > 0: write a jax.profiler trace of this epoch to workdir/profile

  # --mode=export (read from the run's config.json). The paper's Deep Compression row is 6 bits at 33% sparsity, but
  # with retraining; the export does none, and 20% is what pruning costs little then.
  config.export = ml_collections.ConfigDict()
  config.export.prune_fraction = 0.2  # of each kernel's weights, smallest |w| first
  config.export.bits = 6  # codebook of 2**bits values per kernel, one the pruned zero

  # --mode=compress: fine-tuned compression of a trained run, one stage per format
  # (W/exports/<stage>/, rows of sizes.json), read from the run's config.json. Tuned
  # on the validation split of the 10,000-image CPU run (docs/compression.md).
  config.compress = ml_collections.ConfigDict()
  config.compress.stages = 'pruned,shared,qat_int8,qat_int4'  # run in this order
  config.compress.coding = 'ans'  # ans (entropy coded) | packed (a byte or nibble per code)
  config.compress.vector_dtype = 'float16'  # biases and BatchNorm vectors in the files
  # The workdir of another compressed run (e.g. AlexNet on the same data): its formats
  # are drawn on sizes.png and compared at equal accuracy in sizes.md.
  config.compress.reference_workdir = ''
  # Gradual magnitude pruning (Zhu & Gupta) from the run's checkpoint; int8 codes.
  config.compress.pruned = _stage(method='prune', bits=8, sparsity=0.6, epochs=8,
                                  learning_rate=0.02)
  # Deep Compression: the pruned model's kernels k-means-shared, centroids trained.
  config.compress.shared = _stage(method='share', start='pruned', bits=4, epochs=3,
                                  optimizer='adamw', learning_rate=1e-4, warmup_epochs=0.0)
  # Quantization-aware training (qwix) from the run's checkpoint.
  config.compress.qat_int8 = _stage(method='qat', bits=8, epochs=1, learning_rate=0.002,
                                    warmup_epochs=0.0)
  config.compress.qat_int4 = _stage(method='qat', bits=4, epochs=6, learning_rate=0.02)
  return config


def _stage(**fields) -> ml_collections.ConfigDict:
  """One `--mode=compress` stage: every stage has every field, so each can be overridden."""
  stage = ml_collections.ConfigDict({
      'method': 'prune',  # prune | share | qat
      'start': '',  # '' = the run's latest checkpoint, else an earlier stage's result
      'bits': 8,  # prune: bits of the exported codes (8, 4); share: codebook bits (1-8);
      # qat: weight bits (8, 4)
      'sparsity': 0.0,  # prune: final fraction of kernel weights at zero; share: extra
      # post-training pruning before clustering
      'scope': 'layer',  # prune: layer (each kernel alike) | global (one threshold)
      'initial_sparsity': 0.0,  # prune: the schedule's start
      'ramp': 0.5,  # prune: fraction of the stage's steps over which sparsity rises
      'frequency': 1,  # prune: steps between mask updates
      'epochs': 1,  # fine-tuning epochs of this stage
      'optimizer': 'sgd',  # sgd (Nesterov) | adamw, with the run's momentum and decay
      'learning_rate': 0.01,  # peak of the stage's warmup-cosine schedule
      'warmup_epochs': 0.5,
  })
  stage.update(fields)
  return stage
