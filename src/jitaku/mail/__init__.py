"""Mail: receive, check, route, sign, queue and deliver (read `pipeline.py` top to bottom)."""
