"""The MCP application: composition root, settings, command line, transports."""

from ._app import build_server
from ._settings import ConfigurationError, EnvironmentSettings, ServerSettings, load_settings

__all__ = ["ConfigurationError", "EnvironmentSettings", "ServerSettings", "build_server", "load_settings"]
