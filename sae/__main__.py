"""`python -m sae ...` runs the command-line interface."""

from sae.cli import main

raise SystemExit(main())
