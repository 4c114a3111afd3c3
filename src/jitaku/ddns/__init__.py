"""Dynamic DNS: our public address, the providers that publish it, and the check against what the world sees."""
