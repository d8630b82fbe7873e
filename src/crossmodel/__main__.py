"""`python -m crossmodel ...` runs the command line, as the `crossmodel` script does."""

from crossmodel.cli import main

main()
