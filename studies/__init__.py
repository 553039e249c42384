"""Optuna studies over the experiment layer, and the `reid` entry point."""
