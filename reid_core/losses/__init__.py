"""reid_core.losses"""
