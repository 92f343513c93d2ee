"""Configures logging with basicConfig and logs at INFO."""

import logging

logging.basicConfig(format="APP %(message)s", level=logging.INFO)
logging.getLogger("app").info("hello")
