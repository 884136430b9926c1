"""Real servers with their TLS key on the token: nginx, Apache httpd,
haproxy and lighttpd (Debian packages), fetched with curl.

Every configuration file and command comes from docs/HOWTO.md (u.recipe:
the blocks marked <!-- recipe: NAME -->), with a test directory standing
for /srv/p11bridge, a free port for 8443 and the test token's key URIs
for my-token's; openssl.cnf is the recipe's too. curl is the independent
client: it runs with OpenSSL's default provider only.

nginx and Apache fork workers that drop privileges to www-data: they use
www_token (owned by www-data and reachable through pytest's private
directories, see WwwAccess in conftest.py). The level-2 debug log (one
file per test) records which process made each PKCS#11 call: the workers
must sign, not the parent that loaded the key, and each worker must set up
its own session and login rather than wait on the parent's.
"""

import os
import re
import shutil
import statistics
import time
from datetime import datetime, timezone

import pytest

import p11b_util as u
from p11b_secrets import PIN

NGINX_BODY = re.compile(r"^served by nginx worker (\d+)$")
NGINX_WORKER = r"start worker process (\d+)"
MAX_FETCHES = 100  # to reach both nginx workers (the kernel picks one)


# ---- a site: the recipes' directory for one test ----------------------------

class Site:
    """One test's stand-in for /srv/p11bridge."""

    def __init__(self, directory, tok, label, env, subs):
        self.dir = directory
        self.token = tok
        self.label = label
        self.env = env
        self.subs = subs
        self.port = int(subs["8443"])

    def log(self):
        return u.read_log(self.env)

    def write_recipe(self, name, filename, replace=None):
        """Write recipe `name` to filename; replace: {recipe line: line}."""
        text = u.recipe(name, self.subs)
        for old, new in (replace or {}).items():
            assert old in text, f"{old!r} not in recipe {name}:\n{text}"
            text = text.replace(old, new)
        path = self.dir / filename
        path.write_text(text)
        return path

    def command(self, name, program, package):
        argv = u.recipe_command(name, self.subs)
        assert argv[0] == program, argv
        argv[0] = u.require_program(program, package)
        return argv

    def fetch(self, path="/", ok=True):
        """(body, handshake seconds, CompletedProcess) of a curl GET."""
        return u.curl_fetch(self.port, self.dir / "ca.crt",
                            u.default_only_env(self.dir), path=path, ok=ok)


def make_site(tmp_path, tok, label, tls_ca, provider_path, www=None):
    """tmp_path as /srv/p11bridge for the token key `label`: openssl.cnf
    and token.pin (recipe openssl.cnf), server.csr (recipe server-csr)
    signed by the test CA into server.crt, server-key.pem (recipe
    wrap-key), ca.crt, htdocs/index.html, and a free port for 8443.
    www: a WwwAccess, for servers whose workers run as www-data."""
    d = tmp_path
    subs = u.recipe_subs(d, tok, {"server-key": label}, port=u.free_port(),
                         provider=provider_path, module=tok.module)
    (d / "openssl.cnf").write_text(u.recipe("openssl.cnf", subs))
    pin = d / "token.pin"
    pin.write_text(PIN + "\n")
    pin.chmod(0o600)
    env = u.provider_env(d / "openssl.cnf", tok.softhsm_conf,
                         d / "p11bridge.log", level=2)
    shutil.copy(tls_ca.pem, d / "ca.crt")
    u.run_shell_recipe("server-csr", subs, env)
    tls_ca.sign_csr(d / "server.csr", d / "server.crt")
    u.run_shell_recipe("wrap-key", subs, env)
    (d / "htdocs").mkdir()
    (d / "htdocs" / "index.html").write_text(f"token key {label}\n")
    if www is not None:
        www.give(pin)
        www.traverse(d)
    return Site(d, tok, label, env, subs)


# ---- reading the debug log --------------------------------------------------

def signers(log):
    """{pid: number of C_Sign calls} from a debug log."""
    return u.calls_by_pid(log, "C_Sign")


def log_time(line):
    """The UTC timestamp of a debug log line (a datetime)."""
    m = re.search(r" (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ", line)
    assert m, f"no timestamp in log line {line!r}"
    return datetime.fromisoformat(m.group(1)).replace(tzinfo=timezone.utc)


def setup_before_first_sign(log, pid):
    """The Cryptoki functions pid called up to its first C_Sign (in
    order), and the milliseconds from its first log line to that C_Sign
    (None if it never signed)."""
    lines = u.log_lines_of(log, pid)
    calls = []
    for line in lines:
        m = re.search(r"\b(C_[A-Za-z]+)(?:\(|\s*->)", line)
        if m:
            calls.append(m.group(1))
            if m.group(1) == "C_Sign":
                return calls, (log_time(line) -
                               log_time(lines[0])).total_seconds() * 1000
    return calls, None


def assert_own_setup(log, pid, who):
    """pid set up its own token state before its first signature: it ran
    C_Initialize after fork, opened its own session and logged in (a
    token that kept the parent's login answers CKR_USER_ALREADY_LOGGED_IN,
    which is fine). Returns the setup's milliseconds."""
    calls, ms = setup_before_first_sign(log, pid)
    assert ms is not None, f"{who} (pid {pid}) never signed:\n{log}"
    for needed in ("C_Initialize", "C_OpenSession", "C_Login"):
        assert needed in calls, \
            f"{who} (pid {pid}) signed without its own {needed}: {calls}"
    logins = [line for line in u.log_lines_of(log, pid) if "C_Login(" in line]
    assert all(re.search(r"-> (CKR_OK|CKR_USER_ALREADY_LOGGED_IN)\b", line)
               for line in logins), logins
    return ms


def uid_of(pid):
    """The real uid of a running process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except FileNotFoundError:
        return None
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


def assert_unprivileged(pids, www, who):
    """Every one of pids still running runs as the worker user."""
    uids = {pid: uid_of(pid) for pid in pids}
    assert all(uid in (None, www.uid) for uid in uids.values()), \
        f"{who} should run as uid {www.uid}: {uids}"
    assert any(uid is not None for uid in uids.values()), \
        f"none of the {who} processes {sorted(pids)} is running"


def assert_children_signed(log, parent, who):
    """Signatures were made, none by the parent. {pid: C_Sign count}."""
    sign = signers(log)
    assert sign, f"no C_Sign in the debug log:\n{log}"
    assert parent not in sign, \
        f"the {who} parent (pid {parent}) signed itself: {sign}"
    return sign


# ---- nginx ------------------------------------------------------------------

def start_nginx(site, replace=None):
    site.write_recipe("nginx.conf", "nginx.conf", replace)
    argv = site.command("nginx-run", "nginx", "nginx-light")
    server = u.Server(argv, site.env, site.dir, "nginx")
    server.wait_port(site.port)
    return server


def nginx_fetches(site, workers, exclude=()):
    """Fetch until each of `workers` answered twice (or MAX_FETCHES);
    {pid: [(wall-clock time curl started, handshake seconds), ...]} of
    the workers not in exclude, in order."""
    seen = {}
    for _ in range(MAX_FETCHES):
        start = time.time()
        body, seconds, _ = site.fetch()
        m = NGINX_BODY.match(body.strip())
        assert m, f"unexpected answer from nginx: {body!r}"
        pid = int(m.group(1))
        if pid not in exclude:
            seen.setdefault(pid, []).append((start, seconds))
        if all(len(seen.get(w, ())) >= 2 for w in workers):
            break
    assert set(seen) <= set(workers), \
        f"answers from unexpected workers: {sorted(seen)} vs {workers}"
    missing = [w for w in workers if len(seen.get(w, ())) < 2]
    assert not missing, \
        f"{MAX_FETCHES} fetches did not reach workers {missing}: {seen}"
    return seen


def worker_pids(server, error_log, total):
    return [int(p) for p in
            server.wait_file_count(error_log, NGINX_WORKER, total)]


def nginx_version():
    """(major, minor, patch) of the nginx that the tests start."""
    p = u.run([u.require_program("nginx", "nginx"), "-v"], u.base_env())
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", p.stderr + p.stdout)
    assert m, u.describe(p)
    return tuple(int(x) for x in m.groups())


def test_nginx_workers_sign_with_the_wrapped_key_across_reload(
        www_token, www_access, tls_ca, provider_path, tmp_path):
    site = make_site(tmp_path, www_token, "rsa2048", tls_ca, provider_path,
                     www=www_access)
    error_log = site.dir / "nginx-error.log"
    with start_nginx(site) as server:
        first = worker_pids(server, error_log, 2)
        nginx_fetches(site, first)
        assert_unprivileged(first, www_access, "nginx workers")
        u.run(site.command("nginx-reload", "nginx", "nginx-light"),
              site.env)
        second = worker_pids(server, error_log, 4)[2:]
        nginx_fetches(site, second, exclude=first)
        assert_unprivileged(second, www_access, "nginx workers")
        rc = server.stop(site.command("nginx-stop", "nginx", "nginx-light"))
    assert rc == 0, server.output()

    log = site.log()
    sign = assert_children_signed(log, server.pid, "nginx master")
    for pid in first + second:
        assert sign.get(pid, 0) >= 2, \
            f"nginx worker {pid} did not sign its handshakes: {sign}"
        assert_own_setup(log, pid, "nginx worker")
    master = "\n".join(u.log_lines_of(log, server.pid))
    loads = len(re.findall(r"PEM-wrapped URI found", master))
    if nginx_version() >= (1, 27, 4):
        # ssl_object_cache_inheritable (1.27.4, on by default): a reload
        # keeps the key loaded at start when its file is unchanged, and
        # the new workers sign with that inherited key (checked above).
        assert loads == 1, \
            f"the master should load the key once and keep it:\n{master}"
    else:
        assert loads >= 2, \
            f"the master should load the key at start and at reload:\n{master}"


def test_nginx_worker_first_handshake_after_fork(
        www_token, www_access, tls_ca, provider_path, tmp_path,
        record_handshake):
    """A fresh worker's first handshake against the single-process
    server's (master_process off: the process that loaded the key does the
    handshake). Times are reported, not asserted: each worker must set up
    its own session and login, not wait on state left by the parent."""
    site = make_site(tmp_path, www_token, "p256", tls_ca, provider_path,
                     www=www_access)
    error_log = site.dir / "nginx-error.log"

    with start_nginx(site, {"master_process on;":
                            "master_process off;"}) as single:
        times = [site.fetch()[1] for _ in range(8)]
        single.stop()
    record_handshake("nginx single process: first handshake", times[0])
    record_handshake("nginx single process: later handshakes (median)",
                     statistics.median(times[1:]))
    log = site.log()
    assert signers(log).get(single.pid) == len(times), \
        f"nginx (pid {single.pid}) should sign each handshake: {signers(log)}"

    error_log.unlink()
    with start_nginx(site) as server:
        workers = worker_pids(server, error_log, 2)
        seen = nginx_fetches(site, workers)
        rc = server.stop(site.command("nginx-stop", "nginx", "nginx-light"))
    assert rc == 0, server.output()
    log = site.log()
    for i, pid in enumerate(workers, 1):
        ms = assert_own_setup(log, pid, "nginx worker")
        (start, first), *later = seen[pid]
        record_handshake(f"nginx worker {i}: first handshake", first)
        record_handshake(f"nginx worker {i}: later handshakes (median of "
                         f"{len(later)})",
                         statistics.median(s for _, s in later))
        # where a slow first handshake went: before the provider's first
        # log line in the worker (curl's own start-up is in there too), or
        # in the token setup the log shows
        first_line = log_time(u.log_lines_of(log, pid)[0]).timestamp()
        record_handshake(f"nginx worker {i}: curl start to the worker's "
                         "first log line", first_line - start)
        record_handshake(f"nginx worker {i}: worker's first log line to "
                         "its first C_Sign", ms / 1000)


# ---- Apache httpd -----------------------------------------------------------

APACHE_READY = r"resuming normal operations"
APACHE_KEY_LINE = ('    SSLCertificateKeyFile '
                   '"{uri};type=private"')


@pytest.mark.parametrize("key_form", ["uri", "file"])
def test_apache_prefork_serves_with_the_token_key_across_graceful(
        www_token, www_access, tls_ca, provider_path, tmp_path, key_form):
    site = make_site(tmp_path, www_token, "p256", tls_ca, provider_path,
                     www=www_access)
    replace = None
    if key_form == "file":
        uri_line = APACHE_KEY_LINE.format(uri=www_token.uri("p256"))
        replace = {uri_line: u.recipe("apache-keyfile", site.subs).rstrip()}
    site.write_recipe("apache.conf", "httpd.conf", replace)
    error_log = site.dir / "httpd-error.log"
    argv = site.command("apache-run", "apache2", "apache2")
    with u.Server(argv, site.env, site.dir, "apache2") as server:
        server.wait_port(site.port)
        server.wait_file_count(error_log, APACHE_READY, 1)
        assert site.fetch("/index.html")[0] == "token key p256\n"
        before = set(signers(site.log()))
        u.run(site.command("apache-graceful", "apache2", "apache2"),
              site.env)
        server.wait_file_count(error_log, APACHE_READY, 2)
        # an old child may still take a connection while it winds down:
        # fetch until one of the new generation has signed
        for _ in range(20):
            assert site.fetch("/index.html")[0] == "token key p256\n"
            if set(signers(site.log())) - before - {server.pid}:
                break
        assert_unprivileged(set(signers(site.log())) - {server.pid},
                            www_access, "Apache children")
        rc = server.stop(site.command("apache-stop", "apache2", "apache2"))
    errors = error_log.read_text()
    assert rc == 0, f"{server.output()}\n{errors}"
    log = site.log()
    sign = assert_children_signed(log, server.pid, "Apache")
    assert before and set(sign) - before, \
        f"a child of the new generation should sign after the graceful " \
        f"reload: before {before}, all {sign}"
    for pid in sign:
        assert_own_setup(log, pid, "Apache child")
    assert "AH02568" in errors, errors  # "Certificate and private key ...
    # configured from": mod_ssl took the key


def test_apache_without_a_pin_stops_at_start(www_token, www_access, tls_ca,
                                             provider_path, tmp_path):
    """No PIN in the provider configuration: mod_ssl's pass phrase dialog
    asks for one, reads end-of-file (no terminal) and Apache exits with
    AH02564 instead of starting children that cannot log in."""
    site = make_site(tmp_path, www_token, "p256", tls_ca, provider_path,
                     www=www_access)
    cnf = site.dir / "openssl.cnf"
    text = cnf.read_text()
    pin_line = f"pkcs11-module-token-pin = file:{site.dir}/token.pin\n"
    assert pin_line in text, text
    cnf.write_text(text.replace(pin_line, ""))
    uri_line = APACHE_KEY_LINE.format(uri=www_token.uri("p256"))
    site.write_recipe("apache.conf", "httpd.conf", {
        uri_line: u.recipe("apache-keyfile", site.subs).rstrip()})
    p = u.run(site.command("apache-run", "apache2", "apache2"), site.env,
              ok=False, timeout=120)
    errors = (site.dir / "httpd-error.log").read_text()
    assert p.returncode != 0, f"{u.describe(p)}\n{errors}"
    assert "Enter pass phrase:" in p.stdout, u.describe(p)
    assert "AH02564" in errors, errors
    assert not u.port_open(site.port)


# ---- haproxy and lighttpd: certificate and key in one file ------------------

ORDERS = ["cert-first", "key-first"]


def combined_site(tmp_path, token, label, tls_ca, provider_path, order):
    site = make_site(tmp_path, token, label, tls_ca, provider_path)
    u.run_shell_recipe(f"combined-{order}", site.subs, site.env)
    text = (site.dir / "server-combined.pem").read_text()
    labels = re.findall(r"^-----BEGIN ([A-Z0-9# ]+)-----$", text, re.M)
    assert labels == (["CERTIFICATE", "PKCS#11 PROVIDER URI"]
                      if order == "cert-first" else
                      ["PKCS#11 PROVIDER URI", "CERTIFICATE"]), labels
    return site


def run_and_fetch(site, server, path, expect, logfile=None):
    try:
        server.wait_port(site.port)
    except u.CommandFailed as e:
        extra = logfile.read_text() if logfile and logfile.exists() else ""
        raise u.CommandFailed(f"{e}\n--- {logfile} ---\n{extra}") from None
    body, _, _ = site.fetch(path)
    assert body == expect
    server.stop()
    sign = signers(site.log())
    assert sign.get(server.pid, 0) >= 1, \
        f"the server (pid {server.pid}) did not sign: {sign}"


@pytest.mark.parametrize("order", ORDERS)
def test_haproxy_combined_pem(token, tls_ca, provider_path, tmp_path,
                              order):
    site = combined_site(tmp_path, token, "rsa2048", tls_ca, provider_path,
                         order)
    site.write_recipe("haproxy.cfg", "haproxy.cfg")
    argv = site.command("haproxy-run", "haproxy", "haproxy")
    with u.Server(argv, site.env, site.dir, "haproxy") as server:
        run_and_fetch(site, server, "/", "served by haproxy")


@pytest.mark.parametrize("order", ORDERS)
def test_lighttpd_combined_pem(token, tls_ca, provider_path, tmp_path,
                               order):
    """lighttpd leaves an earlier error on OpenSSL's error queue, which
    stops PEM_read_bio_PrivateKey from retrying after the certificate
    block: the provider's decoder has to find the URI block on the first
    decode call."""
    u.require_program("lighttpd", "lighttpd")
    module = "/usr/lib/lighttpd/mod_openssl.so"
    if not os.path.exists(module):
        pytest.fail(f"{module} is missing: install the Debian package "
                    "lighttpd-mod-openssl (scripts/deps.sh lists it)",
                    pytrace=False)
    site = combined_site(tmp_path, token, "p256", tls_ca, provider_path,
                         order)
    site.write_recipe("lighttpd.conf", "lighttpd.conf")
    argv = site.command("lighttpd-run", "lighttpd", "lighttpd")
    with u.Server(argv, site.env, site.dir, "lighttpd") as server:
        run_and_fetch(site, server, "/index.html", "token key p256\n",
                      site.dir / "lighttpd-error.log")
