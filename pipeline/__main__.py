"""`python -m pipeline` runs the `prep` CLI."""

from pipeline.cli.app import main

main()
