"""The app's agents: each module here defines ``create_agent(client)``; its name is the agent's name."""
