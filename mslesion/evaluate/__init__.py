"""Predictions -> numbers: Dice/IoU, surface and lesion-wise metrics, the per-patient evaluation."""
