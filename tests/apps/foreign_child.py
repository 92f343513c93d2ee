"""Run another interpreter (argv[1], without cryostorm_run installed) as a child."""

import subprocess
import sys

sys.exit(subprocess.run([sys.argv[1], "-c", "print('foreign ok')"], check=False).returncode)
