"""changeseg.inference."""
