"""SqueezeNet and friends in JAX/Flax NNX, trained on CIFAR-10 with size accounting."""
