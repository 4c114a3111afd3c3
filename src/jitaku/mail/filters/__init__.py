"""Spam and virus filters at SMTP time (issue 23): jitaku writes no engine of its own; it speaks to the daemons
people trust over their own protocols, one module each (rspamd.py, spamassassin.py, clamav.py), all answering
with a verdict.Verdict, and decides before the 250, so that nothing is bounced later."""
