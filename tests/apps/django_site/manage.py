"""Django's usual manage.py for the test project (tests/test_frameworks.py runs `manage.py runserver --noreload`)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
