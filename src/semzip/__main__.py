"""`python -m semzip ...`: the same command line as the `semzip` script, for environments without it on PATH."""

from .cli import main

raise SystemExit(main())
