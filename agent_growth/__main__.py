"""`python -m agent_growth`: the same command as `agent-growth`."""

from agent_growth.cli import main

main()
