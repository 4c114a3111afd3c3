"""High availability: the managed PostgreSQL cluster (cluster.py), and the standby pair built on it."""
