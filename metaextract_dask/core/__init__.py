"""Plain data and rules: the model, errors, settings, probing and detection.

Nothing here imports Dask's distributed layer or a format library.
"""
