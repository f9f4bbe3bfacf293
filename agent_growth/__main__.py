from agent_growth.cli import main

main()
