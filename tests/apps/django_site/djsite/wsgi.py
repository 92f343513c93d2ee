"""WSGI entry point for gunicorn (`gunicorn djsite.wsgi:application`), as `django-admin startproject` writes it:
django is imported before DJANGO_SETTINGS_MODULE is set."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")

application = get_wsgi_application()
