"""Runs -> predictions: slice-wise and 3D inference, test-time augmentation, ensembles, mask files, export."""
