"""OmniReID core: config, data, model, losses, training engine and evaluation.

Imports nothing heavy at package import time; `reid --help` must not pull in torch.
"""

__version__ = "0.1.0"
