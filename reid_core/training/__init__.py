"""reid_core.training"""
