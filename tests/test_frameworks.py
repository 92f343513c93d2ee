"""Django and SQLAlchemy for real: a Django project served by `manage.py runserver --noreload` and by
gunicorn under `cryostorm-run`, whose view queries SQLite through SQLAlchemy inside the request.

At the real OTLP receiver: the request's SERVER span (Django's instrumentation) with `http.route`
and the configured `service.name`, and SQLAlchemy's CLIENT span for the query as its child.
The project (tests/apps/django_site) is what `django-admin startproject` writes: its wsgi.py imports
django before it sets DJANGO_SETTINGS_MODULE.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PYTHON
from otlp_receiver import ReceivedSpan, Receiver
from test_workers import APPS, Server

DJANGO_SITE = APPS / "django_site"
DJANGO_ROUTE = "items/<int:item_id>"


def otlp_env(rcv: Receiver, service: str) -> dict[str, str]:
    return {
        "CRYOSTORM_EXPORTER_TYPE": "otlp",
        "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint,
        "CRYOSTORM_SERVICE__NAME": service,
        "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "200",
        "CRYOSTORM_SERVICE__ENVIRONMENT": "production",  # development echoes every log record to the console
    }


def wait_route_span(rcv: Receiver, route: str, service: str, output: Callable[[], str]) -> ReceivedSpan:
    """The SERVER span of a request to `route` arrives, from `service`; on timeout say what did arrive."""

    def found(spans: list[ReceivedSpan]) -> bool:
        return any(s.kind == "SERVER" and s.attributes.get("http.route") == route for s in spans)

    try:
        spans = rcv.wait_for_spans(found, timeout=30)
    except AssertionError:
        got = [(s.kind, s.name, s.attributes.get("http.route"), s.scope) for s in rcv.spans()]
        pytest.fail(f"no SERVER span with http.route={route!r} within 30 s; spans (kind, name, route, scope): "
                    f"{got}\nserver output:\n{output()[-4000:]}")
    span = next(s for s in spans if s.kind == "SERVER" and s.attributes.get("http.route") == route)
    assert span.resource["service.name"] == service, span.resource
    return span


def statement(span: ReceivedSpan) -> str:
    return str(span.attributes.get("db.statement") or span.attributes.get("db.query.text") or "")


DJANGO_SERVERS = {
    "runserver": [PYTHON, "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"],
    "gunicorn": [PYTHON, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "-w", "2", "--no-control-socket",
                 "djsite.wsgi:application"],  # cwd: the project
}


@pytest.mark.parametrize("server", list(DJANGO_SERVERS))
def test_django_request_with_sqlalchemy_query(otlp_receiver: Receiver, tmp_path: Path, server: str) -> None:
    env = {**otlp_env(otlp_receiver, "django-shop"), "DJANGO_SITE_DB": str(tmp_path / "items.sqlite")}
    with Server(DJANGO_SERVERS[server], env, tmp_path, cwd=DJANGO_SITE) as srv:
        srv.wait_ready()
        response = srv.client.get(f"{srv.base}/items/7")
        assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{srv.output()[-4000:]}"
        assert response.json()["item"] == "seven"

        request = wait_route_span(otlp_receiver, DJANGO_ROUTE, "django-shop", srv.output)
        assert request.scope == "opentelemetry.instrumentation.django", request.scope

        def query_arrived(spans: list[ReceivedSpan]) -> bool:
            return any(s.trace_id == request.trace_id and "FROM items" in statement(s) for s in spans)

        try:
            spans = otlp_receiver.wait_for_spans(query_arrived, timeout=30)
        except AssertionError:
            got = [(s.kind, s.name, s.scope, s.parent_span_id) for s in otlp_receiver.spans()]
            pytest.fail(f"no SQLAlchemy span in the request's trace within 30 s; spans: {got}\n{srv.output()[-4000:]}")
        query = next(s for s in spans if s.trace_id == request.trace_id and "FROM items" in statement(s))
        assert query.scope == "opentelemetry.instrumentation.sqlalchemy", query.scope
        assert query.kind == "CLIENT", query
        assert query.parent_span_id == request.span_id, (query, request)
        assert query.resource["service.name"] == "django-shop"
        assert query.resource["process.pid"] == request.resource["process.pid"] == response.json()["pid"]
