"""changeseg.io."""
