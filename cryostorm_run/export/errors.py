"""The one error type of the export path: a provider could not be built."""


class TelemetrySetupError(RuntimeError):
    """A provider could not be built; the message says what and how to fix it."""

