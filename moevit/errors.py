"""Exceptions raised by moevit. Every message names the problem and how to fix it."""


class MoevitError(Exception):
    """Base class of all moevit errors."""


class ConfigError(MoevitError, ValueError):
    """An AcceleratorConfig (or a preset name) that cannot be built."""


class FormatRangeError(MoevitError, ValueError):
    """Values that do not fit a fixed-point format where wrapping is not allowed."""


class WeightFileError(MoevitError):
    """A weights folder or file that is missing, the wrong size, or holds NaN/Inf."""


class ShapeError(MoevitError, ValueError):
    """An array of the wrong shape for the configuration."""


class ToolNotFoundError(MoevitError, RuntimeError):
    """A simulator, compiler or synthesis tool that is not installed."""
