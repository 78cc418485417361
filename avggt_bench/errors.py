"""Exceptions that speak to the user: each message names the problem and the fix."""


class AvggtError(Exception):
    """Base class of every error the harness raises on purpose."""


class ConfigError(AvggtError, ValueError):
    """A configuration value is invalid (unknown preset, value out of range, wrong length)."""


class DataError(AvggtError, ValueError):
    """Input data is unusable (empty scene, corrupt image, mixed image sizes)."""


class CheckpointError(AvggtError, RuntimeError):
    """A checkpoint cannot be found, downloaded, or does not match the model."""
