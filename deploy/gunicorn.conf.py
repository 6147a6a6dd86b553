"""gunicorn settings of the documented set-up (docs/deploy.md): `gunicorn -c deploy/gunicorn.conf.py config.wsgi`.

Every value can be changed from the environment. The logger masks the Infobip webhook's path token in
the access and error logs and writes JSON lines when BRIDGE_LOG_FORMAT=json (bridge.logs.GunicornLogger).
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 30
# Trust X-Forwarded-* only from the reverse proxy on this host (or the addresses listed).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
errorlog = "-"
logger_class = "bridge.logs.GunicornLogger"
