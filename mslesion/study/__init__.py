"""The studies the toolkit reproduces: the backbone report's Table 6.1 models, experiments, the demo."""
