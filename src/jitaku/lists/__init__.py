"""Mailing lists: posting, numbering, rewriting, fan-out, bounces, commands."""
