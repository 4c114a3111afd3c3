"""`python -m jitaku` is the `jitaku` command."""

from jitaku.cli import main

main()
