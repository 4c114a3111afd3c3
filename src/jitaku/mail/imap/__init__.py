"""IMAP4rev1 (RFC 3501) over the users' mailboxes: the command parser, and the server built on it."""
