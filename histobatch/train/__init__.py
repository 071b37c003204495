"""Training: datasets, augmentation, targets, losses and the transfer-learning recipe."""
