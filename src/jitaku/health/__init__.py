"""Health checks: each module looks at one thing and says, in one sentence, whether it is right."""
