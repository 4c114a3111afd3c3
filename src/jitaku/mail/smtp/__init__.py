"""SMTP (RFC 5321) for the MX and submission: `machine` is the protocol without I/O (bytes in, replies and
events out), `protocol` runs it on an asyncio transport, `syntax` reads paths and parameters."""
