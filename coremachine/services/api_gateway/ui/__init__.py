"""The web dashboard at /ui: server-rendered pages on the gateway's own backends."""
