"""`python -m sae ...` runs the command-line interface."""

from sae.run.cli import main

raise SystemExit(main())
