"""The web side: for now a read-only status page; the dashboard, archives and blog grow here."""
