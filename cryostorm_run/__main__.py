from cryostorm_run.cli import main

main()
