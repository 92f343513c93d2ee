"""The smallest instrumented program: `cryostorm-run -- python examples/hello.py`.

It has no telemetry code at all. Under cryostorm-run its log warning becomes an OpenTelemetry
log record, and the console exporters print it (on stderr, so stdout stays the program's).
"""

import logging
import sys
import urllib.request  # noqa: F401  (instrumented on import when its instrumentation is installed)


def main() -> int:
    logging.getLogger("hello").warning("hello from a program that knows nothing about telemetry")
    print("hello, world")
    return 0


if __name__ == "__main__":
    sys.exit(main())
