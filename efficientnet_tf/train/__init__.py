"""The trainer: config, strategies, loop, optimizers, progressive learning, checkpoints."""
