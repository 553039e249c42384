"""reid_core.model"""
