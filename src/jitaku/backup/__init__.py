"""Backups through restic: snapshot.py takes one (`jitaku backup now`), restore.py lists, restores and verifies
them, restic.py runs restic. The schedule, retention and the health check come later (issue 26)."""
