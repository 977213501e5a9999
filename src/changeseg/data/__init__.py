"""changeseg.data."""
