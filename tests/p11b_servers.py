"""Servers for one test and their clients: a long-running `openssl s_server
-www` (SServer), any server program (Server), reading a child's output
with a deadline (LineReader), free ports, curl and s_client summaries.
"""

import os
import re
import selectors
import socket
import ssl
import subprocess
import time
from pathlib import Path

from p11b_run import (CommandFailed, OPENSSL, USED_LOGS, describe, kill_group,
                      log_path, openssl_version, require_program, run)
from p11b_secrets import check_no_secret


class LineReader:
    """Reads a child's stdout line by line with a deadline (no sleeps)."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.lines = []
        self.sel = selectors.DefaultSelector()
        self.sel.register(stream, selectors.EVENT_READ)
        os.set_blocking(stream.fileno(), False)

    def wait_for(self, pattern, timeout):
        """The first line matching pattern, or None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="backslashreplace")
                self.lines.append(text)
                if rx.search(text):
                    return text
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.sel.select(left):
                return None
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                if self.buf:
                    self.buf += b"\n"
                    continue
                return None
            self.buf += chunk

    def close(self):
        self.sel.close()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers
    that cannot listen on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class SServer:
    """`openssl s_server -www` on 127.0.0.1:<a free port> with a token key.

    Started with env (it loads the provider), waits for the ACCEPT line
    (no sleeps), and serves until stop() (or -naccept in extra). prefix
    goes before the openssl binary (valgrind, say). handshake() is a TLS
    handshake plus a GET, verified against ca, with a socket timeout.
    """

    def __init__(self, env, cert, key_uri, directory, ca, prefix=(),
                 extra=(), start_timeout=60):
        self.err_path = Path(directory) / "s_server.err"
        self.argv = [str(a) for a in prefix] + [
            OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-www",
            "-cert", str(cert), "-key", key_uri] + [str(a) for a in extra]
        if "PKCS11_PROVIDER_DEBUG" in env:
            USED_LOGS.add(log_path(env))
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                self.argv, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        self.reader = LineReader(self.proc.stdout)
        line = self.reader.wait_for(r"^ACCEPT", start_timeout)
        if line is None:
            self.stop()
            raise CommandFailed(f"s_server did not start:\n{self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1])
        self.ctx = ssl.create_default_context(cafile=str(ca))

    def handshake(self, timeout=30):
        """(ok, what happened, seconds) of one handshake and GET /."""
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", self.port),
                                           timeout=timeout) as sock:
                with self.ctx.wrap_socket(sock,
                                          server_hostname="localhost") as t:
                    t.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    reply = t.recv(64)
            ok = reply.startswith(b"HTTP/1.0 200")
            what = reply[:40].decode(errors="replace")
        except (OSError, ssl.SSLError) as e:
            ok, what = False, f"{type(e).__name__}: {e}"
        self.drain()
        return ok, what, time.monotonic() - t0

    def handshakes(self, n, timeout=30):
        return [self.handshake(timeout) for _ in range(n)]

    def drain(self):
        """Read what s_server wrote so far: its pipe must never fill."""
        fd = self.proc.stdout.fileno()
        while True:
            try:
                if not os.read(fd, 65536):
                    return
            except BlockingIOError:
                return

    def alive(self):
        return self.proc.poll() is None

    def stderr(self):
        return self.err_path.read_text(errors="backslashreplace")

    def wait(self, timeout):
        """Wait for s_server to end by itself (-naccept); its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            self.proc.wait()
            raise CommandFailed(f"s_server did not end within {timeout} s")
        self.drain()
        return rc

    def stop(self):
        """Terminate (if still running); its stderr, checked for PINs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait()
        if not self.proc.stdout.closed:
            self.reader.close()
            self.proc.stdout.close()
        err = self.stderr()
        check_no_secret(err, "s_server's stderr", self.argv)
        return err


class Server:
    """A server program running in the background for one test.

    stdout and stderr go to files in `directory` (or stdout to a pipe read
    by a LineReader, for servers that print their port; merge_stderr sends
    stderr there too). The program and
    everything it forks form a process group that stop() always ends.
    Waiting never sleeps: it waits on the process itself with a short
    timeout, so a server that dies is noticed at once.
    """

    def __init__(self, argv, env, directory, name, pipe_stdout=False,
                 cwd=None, merge_stderr=False):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.out_path = Path(directory) / f"{name}.stdout"
        self.err_path = Path(directory) / f"{name}.stderr"
        if "PKCS11_PROVIDER_DEBUG" in env:
            USED_LOGS.add(log_path(env))
        self._out = None if pipe_stdout else open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            self.argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if pipe_stdout else self._out,
            stderr=subprocess.STDOUT if merge_stderr else self._err,
            start_new_session=True)
        self.pid = self.proc.pid
        self.reader = LineReader(self.proc.stdout) if pipe_stdout else None
        self.stopped = False

    def output(self):
        out = "\n".join(self.reader.lines) if self.reader else \
            self.out_path.read_text(errors="backslashreplace")
        err = self.err_path.read_text(errors="backslashreplace")
        return f"--- {self.name} stdout ---\n{out}\n" \
               f"--- {self.name} stderr ---\n{err}"

    def wait_until(self, predicate, what, timeout=60, step=0.02):
        """predicate()'s first true value; fails if the server exits."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise CommandFailed(
                    f"{self.name} exited with {self.proc.returncode} while "
                    f"waiting for {what}\n{' '.join(self.argv)}\n"
                    f"{self.output()}")
            if time.monotonic() > deadline:
                raise CommandFailed(f"{self.name}: no {what} after {timeout}"
                                    f" s\n{self.output()}")
            try:
                self.proc.wait(timeout=step)
            except subprocess.TimeoutExpired:
                pass

    def wait_port(self, port, timeout=60):
        self.wait_until(lambda: port_open(port), f"listener on port {port}",
                        timeout)

    def wait_line(self, pattern, timeout=60):
        """The first stdout line matching pattern (pipe_stdout servers)."""
        line = self.reader.wait_for(pattern, timeout)
        if line is None:
            state = "exited" if self.proc.poll() is not None else \
                f"still running after {timeout} s"
            raise CommandFailed(f"{self.name}: no line matching {pattern!r}"
                                f" ({state})\n{self.output()}")
        return line

    def wait_file_count(self, path, pattern, count, timeout=60):
        """Wait until `pattern` matches at least `count` lines of a file
        the server writes (its error log); the matches."""
        rx = re.compile(pattern, re.M)

        def matches():
            text = Path(path).read_text(errors="backslashreplace") \
                if Path(path).exists() else ""
            found = rx.findall(text)
            return found if len(found) >= count else None
        return self.wait_until(matches, f"{count}x {pattern!r} in {path}",
                               timeout)

    def wait_exit(self, timeout=60):
        """Wait for the server to exit by itself; its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"{self.name} still running after {timeout}"
                                f" s\n{self.output()}") from None
        self.stop()
        return rc

    def drain(self):
        """Read what a pipe_stdout server printed so far (keeps the pipe
        from filling up)."""
        if self.reader:
            self.reader.wait_for(r"(?!)", 0.01)

    def stop(self, argv=None, env=None, timeout=60):
        """End the server: argv (its own stop command, run with env or
        the server's) or SIGTERM, then wait; SIGKILL the whole group
        whatever happens. The exit code."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        try:
            if self.proc.poll() is None:
                if argv is not None:
                    run(argv, self.env if env is None else env)
                else:
                    self.proc.terminate()
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            kill_group(self.proc)
            self.proc.wait()
            if self.reader:
                self.drain()
                self.reader.close()
                self.proc.stdout.close()
            self.proc.stdin.close()
            for f in (self._out, self._err):
                if f:
                    f.close()
        text = self.output()
        check_no_secret(text, f"{self.name}'s output")
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(timeout=10)


def curl_fetch(port, cafile, env, *extra, path="/", ok=True):
    """GET https://localhost:port/path with curl; (body, handshake seconds,
    CompletedProcess). The handshake time is curl's time_appconnect minus
    time_connect."""
    curl = require_program("curl", "curl")
    argv = [curl, "--silent", "--show-error", "--max-time", "60",
            "--cacert", cafile,
            "--resolve", f"localhost:{port}:127.0.0.1",
            "--write-out", "\n@@ %{time_connect} %{time_appconnect}\n",
            *extra, f"https://localhost:{port}{path}"]
    p = run(argv, env, ok=ok)
    body, _, stats = p.stdout.rpartition("\n@@ ")
    try:
        connect, appconnect = (float(x) for x in stats.split())
    except ValueError:
        raise CommandFailed(f"curl's --write-out not found\n{describe(p)}")
    return body, appconnect - connect, p


_S_CLIENT_FIELDS = {
    "protocol": r"^New, (TLSv[\d.]+), Cipher is (\S+)",
    "peer_sig_type": r"^Peer signature type: (\S+)",
    "peer_digest": r"^Peer signing digest: (\S+)",
    "verify": r"Verify return code: (\d+)",
}


def s_client_summary(stdout):
    """What `openssl s_client` says about its handshake: protocol, cipher,
    peer_sig_type, peer_digest, verify (None when not printed)."""
    out = {}
    for key, rx in _S_CLIENT_FIELDS.items():
        m = re.search(rx, stdout, re.M)
        if key == "protocol":
            out["protocol"], out["cipher"] = m.groups() if m else (None, None)
        else:
            out[key] = m.group(1) if m else None
    return out


def dn_pattern(text):
    """A regex for one RDN as `openssl` prints it in s_server's depth lines
    and s_client's chain: OpenSSL 3.0 prints "CN = x", 3.5 and 3.6 print
    "CN=x" (the versions between are not tested). `text` is "CN=x"."""
    key, _, value = text.partition("=")
    sep = "=" if openssl_version() >= (3, 5, 0) else " = "
    return re.escape(key) + re.escape(sep) + re.escape(value)
