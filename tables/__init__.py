"""State tables of EcoMind Streams, kept in Redis and written once per batch."""
