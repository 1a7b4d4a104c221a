"""Exceptions raised by bn_decay_probe."""


class ProbeConfigError(ValueError):
    """A probe was asked for something it cannot do.

    The message is always one line that says what was wrong and what is allowed, so the CLI can
    print it as is and exit 2.
    """


class DeviceFallbackWarning(UserWarning):
    """device="auto" found no GPU and ran on the CPU."""
