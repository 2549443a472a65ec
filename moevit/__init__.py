"""moevit: co-design toolkit for multi-task MoE vision transformers on FPGAs."""

from moevit.config import AcceleratorConfig, FixedFormat, Formats, PRESETS, preset

__all__ = ["AcceleratorConfig", "FixedFormat", "Formats", "PRESETS", "preset"]
__version__ = "0.1.0"
