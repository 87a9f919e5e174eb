"""State-client adapters (the port is `shared.state_client`)."""
