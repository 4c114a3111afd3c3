"""A jitaku command as a person sees it: on a pseudo-terminal of a given width, or through a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios

from tests.integration.harness import JITAKU

_STYLE = re.compile(r"\x1b\[[0-9;]*m")  # Rich's bold header; nothing else of ours colours


def on_terminal(*args: str, width: int = 80, answer: tuple[bytes, bytes] | None = None) -> tuple[int, str]:
    """Run `jitaku ARGS` with a terminal WIDTH columns wide as its standard input and output (no COLUMNS:
    the width is the terminal's own), typing ANSWER[1] once ANSWER[0] is shown; its exit code and what the
    terminal showed, styles taken out."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, width, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    with os.fdopen(controller, "rb") as reader:
        # a session of its own: a prompt goes to this terminal, never to the one pytest runs in
        process = subprocess.Popen(
            [*JITAKU, *args], stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True
        )
        os.close(terminal)
        seen = b""
        while select.select([reader], [], [], 60)[0]:
            try:
                chunk = reader.read1(65536)
            except OSError:  # Linux answers EIO once the other side is closed
                break
            if not chunk:
                break
            seen += chunk
            if answer is not None and answer[0] in seen:
                os.write(controller, answer[1])
                answer = None
        code = process.wait(timeout=60)
    return code, _STYLE.sub("", seen.decode()).replace("\r\n", "\n")


def through_pipe(*args: str, width: int) -> str:
    """`jitaku ARGS` with its output to a pipe and COLUMNS=WIDTH (without COLUMNS a pipe is 80 wide)."""
    result = subprocess.run(
        [*JITAKU, *args], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": str(width)}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
