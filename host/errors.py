"""Errors of the host library; all are :class:`moevit.errors.MoevitError` (CLI exit 2)."""

from moevit.errors import MoevitError


class DeviceError(MoevitError, RuntimeError):
    """A device that cannot be opened or used (board absent, bad address, missing file)."""


class BackendUnavailable(DeviceError):
    """A backend that is not built or not installed here."""


class RegisterMapMismatch(MoevitError, ValueError):
    """A parsed register map (``.hwh``) that lacks or moves registers the driver needs."""


class HwhError(MoevitError, ValueError):
    """A ``.hwh`` file that cannot be read or holds no usable kernel."""


class DeviceTimeout(MoevitError, TimeoutError):
    """A wait that ran past its timeout."""


class ReplayMismatch(MoevitError, AssertionError):
    """A replayed session that departs from the recording."""
