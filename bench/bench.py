#!/usr/bin/python3
"""The parts of bench/run that are easier in Python (bench/README.md).

  bench.py fill MODULE LABEL COUNT          add COUNT public CKO_DATA objects
                                            (PIN in $P11B_PIN)
  bench.py calls LOG TSV                    token calls between the markers
                                            p11b-bench wrote into a debug log
  bench.py startup TSV CONF_WITH CONF_WITHOUT RUNS LOG
                                            `openssl list -providers` timing
  bench.py tls TSV CONF SECONDS ROUNDS WARMUP [NAME KIND KEY CERT]...
                                            TLS 1.3 full handshakes of
                                            `openssl s_server`, driven by
                                            `openssl s_time` on 127.0.0.1
  bench.py tlsprof TSV CONF FEW MANY OUTDIR [NAME KIND KEY CERT]...
                                            s_server instructions per
                                            handshake (callgrind)
  bench.py profile TSV RUN CALLGRIND_OUT OPS
                                            summarise a callgrind profile
  bench.py syscalls TSV RUN STRACE_N STRACE_2N N
                                            system calls per operation
  bench.py perf TSV RUN PERF_DATA           CPU share per shared object
  bench.py report TSV MARKDOWN [--smoke]    tables, ratios against issue 6

Every result is appended to TSV, one row per fact, first column the kind.
Use /usr/bin/python3 (PyKCS11 is a Debian package).
"""

import os
import re
import socket
import statistics
import subprocess
import sys
import time

from tsvdata import tsv_append

OPENSSL = "openssl"
# s_server without CA stores: no certificate store work in any handshake.
SERVER_FLAGS = ["-tls1_3", "-quiet", "-no-CAfile", "-no-CApath", "-no-CAstore"]


# ---- fill -----------------------------------------------------------------

def cmd_fill(module, label, count):
    import PyKCS11
    from PyKCS11.LowLevel import (CKA_APPLICATION, CKA_CLASS, CKA_LABEL,
                                  CKA_PRIVATE, CKA_TOKEN, CKA_VALUE, CKO_DATA)
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    slots = [s for s in lib.getSlotList(tokenPresent=True)
             if lib.getTokenInfo(s).label.strip() == label]
    if not slots:
        sys.exit(f"bench.py fill: no token labelled {label!r}")
    session = lib.openSession(slots[0], PyKCS11.CKF_SERIAL_SESSION |
                              PyKCS11.CKF_RW_SESSION)
    session.login(os.environ["P11B_PIN"])
    for i in range(int(count)):
        session.createObject([
            (CKA_CLASS, CKO_DATA), (CKA_TOKEN, True), (CKA_PRIVATE, False),
            (CKA_LABEL, f"filler-{i:05d}"), (CKA_APPLICATION, "p11b-bench"),
            (CKA_VALUE, i.to_bytes(4, "big"))])
    session.logout()
    session.closeSession()


# ---- calls ----------------------------------------------------------------

MARK = re.compile(r"^p11b-bench MARK (begin|end) (.*) ops=(\d+)$")
# A Cryptoki call as the provider logs it: "C_Name(...) -> CKR_..." or
# "C_Name -> CKR_...".
CALL = re.compile(r"\b(C_[A-Z][A-Za-z]+)\b[^>]*-> CKR_")


def cmd_calls(log, tsv):
    """Per tag: operations, and how often each C_ function was called."""
    blocks = {}
    tag = None
    counts = {}
    with open(log, errors="replace") as f:
        for line in f:
            m = MARK.match(line.strip())
            if m and m.group(1) == "begin":
                tag, counts = m.group(2), {}
            elif m:
                ops, calls = blocks.setdefault(tag, [0, {}])
                blocks[tag][0] = ops + int(m.group(3))
                for fn, n in counts.items():
                    calls[fn] = calls.get(fn, 0) + n
                tag = None
            elif tag is not None:
                c = CALL.search(line)
                if c:
                    counts[c.group(1)] = counts.get(c.group(1), 0) + 1
    rows = []
    for tag, (ops, calls) in blocks.items():
        rows.append(("calls", tag, ops, "-", 0))
        rows += [("calls", tag, ops, fn, n) for fn, n in sorted(calls.items())]
    tsv_append(tsv, *rows)


# ---- startup --------------------------------------------------------------

def cmd_startup(tsv, conf_with, conf_without, runs, log):
    """Wall time of `openssl list -providers`, alternating the configs."""
    argv = [OPENSSL, "list", "-providers"]
    times = {"with": [], "without": []}
    confs = {"with": conf_with, "without": conf_without}
    env = {k: v for k, v in os.environ.items()
           if k != "PKCS11_PROVIDER_DEBUG"}
    out = subprocess.run(argv, env=dict(env, OPENSSL_CONF=conf_with),
                         capture_output=True, text=True, check=True).stdout
    if "pkcs11" not in out:
        sys.exit("bench.py startup: the provider is not listed:\n" + out)
    for _ in range(int(runs)):
        for name, conf in confs.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=dict(env, OPENSSL_CONF=conf),
                           stdout=subprocess.DEVNULL, check=True)
            times[name].append((time.perf_counter() - t0) * 1e3)
    # The lazy-loading check: no Cryptoki call at all.
    if os.path.exists(log):
        os.unlink(log)
    subprocess.run(argv, env=dict(env, OPENSSL_CONF=conf_with,
                                  PKCS11_PROVIDER_DEBUG=f"file:{log},level:3"),
                   stdout=subprocess.DEVNULL, check=True)
    calls = 0
    if os.path.exists(log):
        with open(log, errors="replace") as f:
            calls = sum(1 for line in f if re.search(r"\bC_[A-Z]", line))
    rows = [("startup", name, len(v), f"{statistics.median(v):.3f}",
             f"{min(v):.3f}") for name, v in times.items()]
    rows.append(("startup_calls", calls))
    tsv_append(tsv, *rows)


# ---- TLS ------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def start_server(key, cert, conf, errfile):
    for _ in range(5):
        port = free_port()
        p = subprocess.Popen(
            [OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-key", key,
             "-cert", cert, *SERVER_FLAGS],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=errfile, env=dict(os.environ, OPENSSL_CONF=conf))
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return p, port
            except OSError:
                time.sleep(0.05)
        p.kill()
        p.wait()
    sys.exit("bench.py tls: s_server did not start (see its stderr)")


def s_time(port, seconds):
    """Full handshakes one after another: (count, wall seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [OPENSSL, "s_time", "-connect", f"127.0.0.1:{port}", "-new",
         "-time", str(seconds)], capture_output=True, text=True,
        env=dict(os.environ, OPENSSL_CONF="/dev/null"))
    wall = time.perf_counter() - t0
    m = re.search(r"(\d+) connections in [\d.]+s", out.stdout)
    if out.returncode != 0 or not m or int(m.group(1)) == 0:
        sys.exit("bench.py tls: s_time failed:\n" + out.stdout + out.stderr)
    return int(m.group(1)), wall


def cmd_tls(tsv, conf, seconds, rounds, warmup, *specs):
    """Servers NAME (key type) KIND (token or file), alternated in rounds;
    WARMUP 1 runs a second of handshakes on each first."""
    hz = os.sysconf("SC_CLK_TCK")
    servers = []
    errlog = open(os.path.join(os.path.dirname(os.path.abspath(tsv)),
                               "s_server.err"), "a")
    try:
        for i in range(0, len(specs) - 3, 4):
            name, kind, key, cert = specs[i:i + 4]
            p, port = start_server(key, cert, conf, errlog)
            servers.append((name, kind, p, port))
            if warmup == "1":
                s_time(port, 1)  # login, first signature, caches
        rows = []
        for r in range(int(rounds)):
            for name, kind, p, port in servers:
                c0 = cpu_ticks(p.pid)
                n, wall = s_time(port, int(seconds))
                c1 = cpu_ticks(p.pid)
                rows.append(("tls", name, kind, r + 1, n, f"{wall:.4f}",
                             f"{(c1 - c0) / hz / n * 1e6:.1f}"))
        tsv_append(tsv, *rows)
    finally:
        for _, _, p, _ in servers:
            p.terminate()
            p.wait()
        errlog.close()


def listening(port):
    """True once something listens on 127.0.0.1:port (no connection made)."""
    want = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[1].endswith(want) and line.split()[3] == "0A"
                   for line in list(f)[1:])


def tls_client_loop(port, count):
    """COUNT full TLS 1.3 handshakes, one after the other."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as s:
            ctx.wrap_socket(s).close()  # the handshake is done


def callgrind_server(conf, key, cert, count, out):
    """Total Ir of an s_server that serves COUNT handshakes, and the Ir
    inside the token's C_ functions and in EVP_DigestSign."""
    port = free_port()
    with open(out + ".err", "w") as err:
        p = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-key", key,
             "-cert", cert, *SERVER_FLAGS, "-naccept", str(count)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=dict(os.environ, OPENSSL_CONF=conf))
        deadline = time.monotonic() + 120
        while not listening(port):
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                sys.exit(f"bench.py tlsprof: s_server did not start ({out})")
            time.sleep(0.1)
        tls_client_loop(port, count)
        if p.wait(timeout=600) != 0:
            sys.exit(f"bench.py tlsprof: s_server failed, see {out}.err")
    return server_costs(out)


def server_costs(out):
    """Total Ir, Ir in the token's C_ calls, Ir in EVP_DigestSign."""
    text, incl = annotate(out, "--inclusive=yes")
    total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text)
                .group(1).replace(",", ""))
    token = cost(incl, token_calls)
    sign = cost(incl, lambda f: f == "EVP_DigestSign")
    return total, token, sign


def cmd_tlsprof(tsv, conf, few, many, outdir, *specs):
    """Server instructions per handshake: the difference of an s_server
    run of MANY handshakes and one of FEW (start-up cancels out)."""
    rows = []
    few, many = int(few), int(many)
    for i in range(0, len(specs) - 3, 4):
        name, kind, key, cert = specs[i:i + 4]
        base = os.path.join(outdir, f"cg.tls.{name}.{kind}")
        a = callgrind_server(conf, key, cert, few, base + f".{few}")
        b = callgrind_server(conf, key, cert, many, base + f".{many}")
        per = [(y - x) / (many - few) for x, y in zip(a, b)]
        rows.append(("tlsprof", name, kind, many - few,
                     *(f"{v:.0f}" for v in per)))
    tsv_append(tsv, *rows)


# ---- profiles -------------------------------------------------------------

LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$")
BENCH_FUNCS = {"worker_main", "do_op", "evp_sign", "evp_decrypt", "evp_derive",
               "limit_sign", "limit_decrypt", "limit_derive", "clone",
               "start_thread", "start_thread'2", "measure"}


def annotate(path, *args):
    # --threshold=100: every function, or sums over some of them would
    # depend on what made the cut.
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no",
                          *args, path],
                         capture_output=True, text=True, check=True).stdout
    entries, seen = [], {}
    for line in out.splitlines():
        m = LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        name, _, lib = m.group(2).rpartition(" [")
        if not name:
            name, lib = m.group(2), "?"
        func = name.split(":", 1)[1] if ":" in name else name
        ir = int(m.group(1).replace(",", ""))
        lib = os.path.basename(lib.rstrip("]"))
        # The same function may be listed again under another file name,
        # once without its object: keep one entry, with the object.
        if (ir, func) in seen:
            i = seen[(ir, func)]
            if entries[i][2] == "?":
                entries[i] = (ir, func, lib)
            continue
        seen[(ir, func)] = len(entries)
        entries.append((ir, func, lib))
    return out, entries


def cost(entries, pred):
    """Inclusive Ir of the functions whose name pred accepts, each counted
    once (callgrind_annotate may list a function twice, once without its
    object file)."""
    best = {}
    for ir, f, _ in entries:
        if pred(f):
            best[f] = max(ir, best.get(f, 0))
    return sum(best.values())


def token_calls(name):
    """The token's entry points: only Cryptoki functions are named C_*."""
    return name.startswith("C_")


def cmd_profile(tsv, run, path, ops):
    """Ir per operation (OPS operations ran in the collected threads), the
    biggest inclusive and self costs."""
    text, incl = annotate(path, "--inclusive=yes")
    _, excl = annotate(path, "--inclusive=no")
    total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text)
                .group(1).replace(",", ""))
    ops = int(ops)
    init = cost(incl, lambda f: f == "EVP_DigestSignInit_ex")
    # The ECDSA arithmetic itself, in a software run: what is left is the
    # EVP machinery any provider pays when used as libssl uses it.
    math = cost(incl, lambda f: f == "ECDSA_do_sign_ex")
    rows = [("prof_total", run, ops, f"{total / ops:.0f}", f"{init / ops:.0f}",
             f"{math / ops:.0f}")]
    token = cost(incl, token_calls)
    rows.append(("prof_token", run, f"{token / ops:.0f}"))
    # Unnamed libcrypto internals (no debug symbols) repeat their callers.
    shown = [e for e in incl if e[1] not in BENCH_FUNCS and
             not e[1].startswith("0x")][:15]
    rows += [("prof_incl", run, i + 1, f, lib, f"{ir / ops:.0f}")
             for i, (ir, f, lib) in enumerate(shown)]
    rows += [("prof_self", run, i + 1, f, lib, f"{ir / ops:.0f}")
             for i, (ir, f, lib) in enumerate(excl[:12])]
    own = [e for e in incl if e[2] == "pkcs11.so"][:12]
    rows += [("prof_own", run, i + 1, f, lib, f"{ir / ops:.0f}")
             for i, (ir, f, lib) in enumerate(own)]
    tsv_append(tsv, *rows)


def strace_counts(path):
    counts = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$",
                         line)
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1))
    return counts


def cmd_syscalls(tsv, run, short, long, extra_ops):
    """System calls per operation: the difference of two `strace -c` runs
    that differ by EXTRA_OPS operations (setup costs cancel out)."""
    a, b = strace_counts(short), strace_counts(long)
    rows = []
    for name in sorted(set(a) | set(b)):
        per = (b.get(name, 0) - a.get(name, 0)) / int(extra_ops)
        if per >= 0.05:
            rows.append(("syscalls", run, name, f"{per:.2f}"))
    rows.append(("syscalls", run, "-", "0"))  # the run happened
    tsv_append(tsv, *rows)


def cmd_perf(tsv, run, data):
    out = subprocess.run(["perf", "report", "-i", data, "--stdio",
                          "--no-children", "--sort", "dso", "-g", "none"],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(\S+)", line)
        if m and float(m.group(1)) >= 0.5:
            rows.append(("perf_dso", run, m.group(2), m.group(1)))
    tsv_append(tsv, *rows)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "report":
        import report
        report.main(sys.argv[2:])
    else:
        cmd = globals().get("cmd_" + sys.argv[1])
        if cmd is None:
            sys.exit(__doc__)
        cmd(*sys.argv[2:])
