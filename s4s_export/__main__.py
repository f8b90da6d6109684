"""`python -m s4s_export` runs the CLI."""

from .cli import main

main()
