"""Evaluation helpers that need no training stack: probability calibration (`calibration`)."""
