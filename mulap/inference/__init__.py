"""Inference: load a model, embed audio (with a cache), search a folder, tag, the HEAR API.

Loads no Lightning and imports nothing from `mulap.training`: a model can be used without the
training stack (checked by tests/test_layers.py).
"""
