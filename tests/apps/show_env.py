"""Print the environment variables that show whether the hook was set up."""

import os

print("PYTHONPATH=" + os.environ.get("PYTHONPATH", "<unset>"))
print("OTEL_TRACES_EXPORTER=" + os.environ.get("OTEL_TRACES_EXPORTER", "<unset>"))
print("OTEL_SEMCONV_STABILITY_OPT_IN=" + os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "<unset>"))
