"""``python -m catcher`` runs the command line."""

from .cli import main

main()
