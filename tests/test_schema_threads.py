"""The schema view under concurrent first requests, as a threaded web worker serves them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.procs import ROOT

# Runs in a fresh interpreter: the race is in drf-spectacular's first, lazy set-up.
SCRIPT = """
import json, threading, django
django.setup()
from django.test import RequestFactory
from bridge.api.schema import SchemaView

view, statuses, start = SchemaView.as_view(), [], threading.Barrier(16)

def ask():
    start.wait()
    response = view(RequestFactory().get("/api/schema/", HTTP_ACCEPT="application/json"))
    response.render()
    statuses.append(response.status_code)

threads = [threading.Thread(target=ask) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(statuses))
"""


def test_sixteen_first_requests_at_once_all_get_the_schema():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert json.loads(run.stdout.strip().splitlines()[-1]) == [200] * 16
