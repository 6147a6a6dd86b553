# Handover Bridge: one image for the web process and the worker clusters (docs/deploy.md, "In a container").
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN adduser --system --group --home /opt/handover-bridge handover-bridge
WORKDIR /opt/handover-bridge/current

COPY requirements/base.txt requirements/base.txt
RUN python -m pip install -r requirements/base.txt

COPY --chown=handover-bridge:handover-bridge . .
RUN install -d -o handover-bridge -g handover-bridge staticfiles
USER handover-bridge

# Settings come from the environment only (compose's env_file), never from a .env baked into the image.
ENV BRIDGE_ENV_FILE= GUNICORN_BIND=0.0.0.0:8000
EXPOSE 8000
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi"]
