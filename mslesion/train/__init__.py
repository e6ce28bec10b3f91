"""Datasets -> runs: input pipelines, losses and metrics, the 2D and 3D runners, checkpoints, tuning."""
