"""Shared helpers for astroflow's model recipes (models/<name>/train.py)."""
