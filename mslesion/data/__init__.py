"""Volumes -> slices: cohort discovery, reading and normalising volumes, slicing, splits, prepared datasets, the synthetic cohort."""
