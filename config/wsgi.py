"""WSGI entry point (gunicorn config.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from config.startup import refuse_bad_configuration

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Exit code 4 is gunicorn's "App failed to load": it stops instead of restarting workers forever.
refuse_bad_configuration(exit_code=4)
application = get_wsgi_application()
