"""`python -m stepgap` is the `stepgap` command."""

from stepgap.cli import main

main()
