"""HTTP API and drawing page: `create_app(reader_or_settings)` builds the FastAPI app (see app.py)."""

from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
