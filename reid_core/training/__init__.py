"""Training: the engine and its callbacks, LR schedule, adaptive clipping, checkpoints, and
`setup.build_trainer`, which maps a config and a dataset to a ready Trainer."""
