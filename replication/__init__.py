"""Reference replication suite for normalizing flows."""
