"""Create the file named by argv[1]: proves the program ran."""

import pathlib
import sys

pathlib.Path(sys.argv[1]).write_text("ran")
