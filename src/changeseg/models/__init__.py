"""The C-3PO network: backbones, MTF, MSF, heads, the model and its presets."""

from changeseg.models.backbones import BACKBONES, Backbone
from changeseg.models.merge import MergeTemporal
from changeseg.models.model import ChangeSegModel, ModelConfig, build_model
from changeseg.models.presets import PRESETS, build_preset, preset_config
from changeseg.models.pyramid import MergeSpatial

__all__ = ["BACKBONES", "PRESETS", "Backbone", "ChangeSegModel", "MergeSpatial", "MergeTemporal",
           "ModelConfig", "build_model", "build_preset", "preset_config"]
