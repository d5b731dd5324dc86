"""The papers' experiments as commands: plots, memory, noise, online learning, parallel speed."""
