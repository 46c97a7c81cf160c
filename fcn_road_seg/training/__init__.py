"""Training and evaluation: data, transforms, metrics, BEV, calibration, export, weights."""
