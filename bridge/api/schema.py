"""The API's OpenAPI schema view."""

from __future__ import annotations

import threading

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView


class SchemaView(SpectacularAPIView):
    """drf-spectacular's schema view, generating one schema at a time in a process.

    Its generator is not thread-safe: two first requests at once in a threaded worker (gunicorn's
    gthread, the documented set-up) can answer 500 with `'NoneType' object has no attribute
    'startswith'` (https://github.com/tfranzel/drf-spectacular/issues/1123). The schema is small
    and rarely asked for, so requests simply take turns.
    """

    _lock = threading.Lock()

    @extend_schema(**SCHEMA_KWARGS)  # as the parent's get: the schema describes its own endpoint
    def get(self, request, *args, **kwargs):
        with self._lock:
            return super().get(request, *args, **kwargs)
