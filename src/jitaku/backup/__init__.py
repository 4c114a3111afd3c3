"""Backups through restic: snapshot.py takes one (`jitaku backup now`), restore.py lists, restores and verifies
them, restic.py runs restic, schedule.py takes them and runs the restore drill in the daemon, state.py keeps what
they came to for the schedule and the health check (jitaku.health.backup)."""
