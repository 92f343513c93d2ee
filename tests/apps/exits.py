"""Exit in the way argv[1] says: `code` (sys.exit(7)) or `raise` (uncaught exception)."""

import sys

print("before exit")
if sys.argv[1] == "code":
    sys.exit(7)
raise RuntimeError("boom from the program")
