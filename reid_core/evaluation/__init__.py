"""reid_core.evaluation"""
