"""Logs a warning without ever configuring logging (Python's last-resort handler prints it)."""

import logging

logging.getLogger("app").warning("careful")
