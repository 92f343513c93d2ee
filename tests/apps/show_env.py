"""Print the environment variables that show whether the hook was set up."""

import os

print("PYTHONPATH=" + os.environ.get("PYTHONPATH", "<unset>"))
print("OTEL_TRACES_EXPORTER=" + os.environ.get("OTEL_TRACES_EXPORTER", "<unset>"))
