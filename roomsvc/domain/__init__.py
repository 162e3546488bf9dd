"""The domain: rooms, participants, secrets and their rules. No network, no database, no crypto library."""
