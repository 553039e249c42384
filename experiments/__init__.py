"""Running one experiment: train/eval commands, MLflow tracking, pyfunc model, registry."""
