"""The primary/standby pair: managed PostgreSQL, standby, failover, the floating address."""
