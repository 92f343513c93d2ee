"""A plain Flask app for tests/test_install.py: no telemetry code at all. In the fresh venv that test
builds, opentelemetry-instrumentation-flask (activated by the cryostorm hook) traces it.
Run by `flask --app install_flask run` (Flask's own server) and by gunicorn."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name: str) -> dict:
    return {"pid": os.getpid(), "hello": name}


@app.get("/health")
def health() -> dict:
    return {"pid": os.getpid()}
