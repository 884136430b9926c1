"""A program on a pseudo-terminal: answering a passphrase prompt the way a
person at the keyboard would (run_with_pty).
"""

import os
import pty
import re
import select
import signal
import termios
import time

from p11b_run import CommandFailed, USED_LOGS, log_path


def _wait_for_noecho(fd, deadline, argv):
    """Wait until the program has turned the terminal's echo off (as a
    password prompt does right after printing the prompt), reading what it
    writes meanwhile; typing earlier would be echoed. On Linux the master
    side of a pty reports the terminal's (the slave's) settings. This
    waits on a condition with a deadline, checking it whenever output
    arrives and at least every 10 ms."""
    got = b""
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        if time.monotonic() > deadline:
            raise CommandFailed(f"{' '.join(argv)}: the prompt never turned "
                                f"the terminal's echo off")
        r, _, _ = select.select([fd], [], [], 0.01)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the program closed the terminal
                chunk = b""
            if not chunk:
                break
            got += chunk
    return got


class PtyResult:
    def __init__(self, argv, returncode, output, prompt):
        self.args = argv
        self.returncode = returncode
        self.output = output      # everything the terminal showed
        self.prompt = prompt      # the output up to the answer


def run_with_pty(argv, env, answer, prompt, timeout=60):
    """Run argv on a new pseudo-terminal (its controlling tty), wait for
    the regex `prompt` in what it writes, type answer + newline, read to
    EOF. No sleeps: select() with a deadline. Output is text with '\\r\\n'
    turned into '\\n'. A process that never prompts or never ends fails
    the test (and is killed)."""
    argv = [str(a) for a in argv]
    if "PKCS11_PROVIDER_DEBUG" in env:
        USED_LOGS.add(log_path(env))
    pid, fd = pty.fork()
    if pid == 0:  # the child: on the pty already
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    buf, shown, answered = b"", None, False
    rx = re.compile(prompt.encode())
    deadline = time.monotonic() + timeout
    status = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandFailed(
                    f"{' '.join(argv)}: no {'EOF' if answered else 'prompt'}"
                    f" within {timeout} s; the terminal showed:\n"
                    f"{buf.decode(errors='backslashreplace')}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            buf += chunk
            if not answered and rx.search(buf):
                shown = buf
                buf += _wait_for_noecho(fd, deadline, argv)
                os.write(fd, answer.encode() + b"\n")
                answered = True
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(fd)
    if not answered:
        raise CommandFailed(f"{' '.join(argv)} ended without a prompt "
                            f"matching {prompt!r}:\n"
                            f"{buf.decode(errors='backslashreplace')}")
    assert not os.WIFSIGNALED(status), \
        f"{argv[0]} killed by signal {os.WTERMSIG(status)}"
    text = buf.decode(errors="backslashreplace").replace("\r\n", "\n")
    return PtyResult(argv, os.WEXITSTATUS(status), text,
                     shown.decode(errors="backslashreplace"))
