"""User-facing errors: each carries a one-line message that names the file or key and what to do."""


class VMBError(Exception):
    """Base class for errors shown to the user as one line, without a traceback."""


class ConfigError(VMBError):
    """A config file, key or value is wrong."""


class DataError(VMBError):
    """A data directory, CSV line or video is missing or unreadable."""
