"""Errors the repository raises; each carries a message fit for a user."""


class NotFound(LookupError):
    """An id that names nothing."""


class BadInput(ValueError):
    """Input rejected before anything was written."""
