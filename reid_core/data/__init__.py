"""Data: the index of an ORBench-layout tree, splits, protocols, datasets and P x K sampling."""
