"""changeseg.service."""
