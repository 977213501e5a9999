"""changeseg.training."""
