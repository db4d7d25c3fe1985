"""scopegate: OAuth 2.0 bearer-token validation for Python APIs."""

from scopegate._version import __version__

__all__ = ["__version__"]
