"""changeseg.cli."""
