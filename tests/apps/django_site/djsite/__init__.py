"""A minimal Django project: one view that queries SQLite through SQLAlchemy (tests/test_frameworks.py)."""
