"""Real PKCS#11 tokens for the compatibility matrix (tests/test_token_matrix.py).

Each setup_* function builds one token in a private directory and returns
a Rig: the module the provider loads, the token label, the PIN, the
environment and the argv prefix every process must run with (a private
mount/IPC namespace for the tokens whose paths are compiled in), the keys
made on it, and what the token cannot do (CANNOT: check -> reason).

Daemons are started in the foreground (or their pid is read from the pid
file they write), stopped by that pid in Rig.close(), and listen on
loopback or unix sockets only. Nothing outside the rig's directory is
written: a namespace holder (`unshare` running `sleep`) carries the bind
mounts a token needs, and `nsenter` puts each process into it.

The rigs need root for the namespaces; a token whose packages are missing
is reported by Unavailable (the test module turns it into a skip that
names the package).
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import p11b_util as u

LIBDIR = "/usr/lib/x86_64-linux-gnu"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
P11KIT_PROXY = f"{LIBDIR}/p11-kit-proxy.so"
P11KIT_CLIENT = f"{LIBDIR}/pkcs11/p11-kit-client.so"
NSS_SOFTOKN = f"{LIBDIR}/libsoftokn3.so"
OPENCRYPTOKI = f"{LIBDIR}/pkcs11/libopencryptoki.so"
TPM2_PKCS11 = f"{LIBDIR}/pkcs11/libtpm2_pkcs11.so"
P11KIT_MODULES = "/usr/share/p11-kit/modules"
OPENSC = f"{LIBDIR}/opensc-pkcs11.so"
VPCD = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

# Debian 12 packages each token needs (scripts/deps.sh installs the same).
PACKAGES = {
    "softhsm": ["softhsm2", "opensc"],
    "p11kit-proxy": ["p11-kit-modules", "softhsm2"],
    "p11kit-remote": ["p11-kit", "p11-kit-modules", "softhsm2"],
    "nss": ["libnss3", "libnss3-tools", "p11-kit-modules"],
    "opencryptoki": ["opencryptoki"],
    "tpm2": ["libtpm2-pkcs11-1", "libtpm2-pkcs11-tools", "tpm2-tools",
             "swtpm", "swtpm-tools", "tpm2-abrmd", "libtss2-tcti-tabrmd0",
             "dbus-daemon"],
    "opensc": ["opensc-pkcs11", "pcscd", "vsmartcard-vpcd", "libnss3-tools",
               "libcacard-dev", "gcc", "pkg-config", "iproute2"],
}

PIN = u.PIN
SO_PIN = u.SO_PIN
SHORT_PIN = "p11b7d3f"   # for tokens whose PINs are at most 8 long
SHORT_SO_PIN = "p11b4c9e"
u.add_secrets(SHORT_PIN, SHORT_SO_PIN)

# What a token may lack; a test skips with the reason.
CHECKS = ("list", "pubkey-match", "cert", "rsa-pss", "ecdsa",
          "decrypt-pkcs1", "decrypt-oaep-sha1", "decrypt-oaep-sha256",
          "ecdh", "tls13", "tls12", "genpkey-rsa", "genpkey-ec")


# The mechanism (as pkcs11-tool -M names it) without which a check cannot
# run on the token: where a token lacks it, Rig.cannot says why.
# (CKM_EC_KEY_PAIR_GEN keeps its old name ECDSA-KEY-PAIR-GEN there.)
NEEDS = {"ecdsa": "ECDSA", "ecdh": "ECDH1-DERIVE",
         "genpkey-ec": "ECDSA-KEY-PAIR-GEN",
         "genpkey-rsa": "RSA-PKCS-KEY-PAIR-GEN"}


class Unavailable(Exception):
    """The token cannot be set up here (a package or a privilege is missing)."""


@dataclass
class Rig:
    name: str
    title: str                # for docs/COMPATIBILITY.md
    root: Path
    module: str               # what the provider loads
    label: str                # token label
    pin: str
    env: dict                 # for every process (tools and provider)
    prefix: list = field(default_factory=list)   # nsenter ... or []
    tool_module: str = ""     # for pkcs11-tool ("" = module)
    init_args: Optional[str] = None
    cannot: dict = field(default_factory=dict)   # check -> reason
    keys: dict = field(default_factory=dict)     # "rsa"/"ec" -> hex id
    labels: dict = field(default_factory=dict)   # "rsa"/"ec" -> label
    packages: list = field(default_factory=list)
    pids: list = field(default_factory=list)     # stopped by close()
    procs: list = field(default_factory=list)    # Popen objects we own
    setup_seconds: float = 0.0
    conf: Optional[Path] = None

    # -- running things in the token's world
    def run(self, argv, env=None, **kw):
        return u.run(self.prefix + [str(a) for a in argv],
                     self.env if env is None else env, **kw)

    def tool(self, *args, login=True, ok=True):
        argv = ["pkcs11-tool", "--module", self.tool_module or self.module,
                "--token-label", self.label]
        if login:
            argv += ["--login", "--pin", self.pin]
        return self.run(argv + list(args), env=self.tool_env(), ok=ok)

    def tool_env(self):
        return {k: v for k, v in self.env.items()
                if k not in ("OPENSSL_CONF", "PKCS11_PROVIDER_DEBUG")}

    def provider_env(self):
        """self.env plus what a process loading an ASan-built provider
        needs; tools and daemons run without it (pkcs11-tool trips over
        ASan inside libcrypto on its own)."""
        env = dict(self.env)
        env.update(u.sanitizer_env())
        return env

    def ossl(self, *args, env=None, **kw):
        return self.run([u.OPENSSL, *args],
                        env=self.provider_env() if env is None else env, **kw)

    def uri(self, kind=None, type=None):
        """pkcs11:token=...[;object=<the label of key kind>][;type=...]."""
        return u.make_uri(token=self.label,
                          object=self.labels.get(kind, kind), type=type)

    def write_provider_conf(self, provider, log):
        pin_file = self.root / "pin.txt"
        pin_file.write_text(self.pin)
        pin_file.chmod(0o600)
        keys = {"module": provider, "pkcs11-module-path": self.module,
                "pkcs11-module-token-pin": f"file:{pin_file}"}
        if self.init_args:
            keys["pkcs11-module-init-args"] = self.init_args
        keys["activate"] = "1"
        self.conf = self.root / "openssl.cnf"
        lines = ["openssl_conf = openssl_init", "", "[openssl_init]",
                 "providers = provider_sect", "", "[provider_sect]",
                 "default = default_sect", "pkcs11 = pkcs11_sect", "",
                 "[default_sect]", "activate = 1", "", "[pkcs11_sect]"]
        lines += [f"{k} = {v}" for k, v in keys.items()]
        self.conf.write_text("\n".join(lines) + "\n")
        self.env["OPENSSL_CONF"] = str(self.conf)
        self.env["PKCS11_PROVIDER_DEBUG"] = f"file:{log},level:2"
        u.LOGS.add(Path(log))

    def mechanisms(self):
        """The mechanism names the token lists (pkcs11-tool -M)."""
        out = self.tool("-M", login=False).stdout
        return {line.split(",")[0].strip().split(" ")[0]
                for line in out.splitlines() if line.startswith("  ")}

    def make_keys(self, rsa=True, ec=None):
        """RSA and P-256 key pairs; ec=None: EC when the token lists EC key
        generation. A declared lack whose mechanism the token does list is
        dropped: the check then runs (the token got it in a newer
        version) instead of being skipped by an old note."""
        mechs = self.mechanisms()
        for check, mech in NEEDS.items():
            if check in self.cannot and mech in mechs:
                del self.cannot[check]
        if ec is None:
            ec = NEEDS["genpkey-ec"] in mechs
        if rsa:
            self.tool("--keypairgen", "--key-type", "rsa:2048", "--id", "01",
                      "--label", "rsa", "--usage-sign", "--usage-decrypt")
            self.keys["rsa"] = "01"
        if ec:
            self.tool("--keypairgen", "--key-type", "EC:prime256v1", "--id",
                      "02", "--label", "ec", "--usage-sign", "--usage-derive")
            self.keys["ec"] = "02"

    def export_public(self, kind):
        """The token's own export of a public key (DER SPKI), by pkcs11-tool."""
        out = self.root / f"{kind}-token.der"
        self.tool("--read-object", "--type", "pubkey", "--id",
                  self.keys[kind], "-o", out, login=False)
        return out.read_bytes()

    # -- daemons
    def start(self, argv, log, env=None):
        """Start a daemon in the foreground; stopped by its pid in close()."""
        with open(log, "w") as f:
            p = subprocess.Popen(self.prefix + [str(a) for a in argv],
                                 env=self.env if env is None else env,
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def close(self):
        for pid in reversed(self.pids):
            _stop_pid(pid)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.pids.clear()
        self.procs.clear()


def _stop_pid(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise u.CommandFailed(f"timed out waiting for {what}")


def _need(*paths):
    for p in paths:
        if not (os.path.exists(p) or shutil.which(p)):
            raise Unavailable(f"{p} is not installed")


def _need_root(what):
    if os.geteuid() != 0:
        raise Unavailable(f"{what} needs root (private mount namespace)")


def _holder(rig, ipc=False):
    """A process holding private mount (and IPC) namespaces: every later
    process of the rig enters them with nsenter."""
    _need_root(rig.title)
    argv = ["unshare", "--mount", "--propagation", "private"]
    if ipc:
        argv.append("--ipc")
    p = rig.start(argv + ["sleep", "infinity"], rig.root / "holder.log")
    # --root: the holder's root, which is not the mount namespace's own
    # when the suite runs in a chroot (scripts/distro-test.sh)
    rig.prefix = ["nsenter", "-t", str(p.pid), "--mount", "--root"]
    if ipc:
        rig.prefix.append("--ipc")
    rig.prefix.append("--")
    # unshare execs sleep in the new namespaces: wait until it has
    _wait(lambda: os.readlink(f"/proc/{p.pid}/ns/mnt")
          != os.readlink("/proc/self/ns/mnt"), "the namespace holder")


def _bind(rig, src, dst):
    rig.run(["mount", "--bind", src, dst], env=u.base_env())


def _softhsm_token(root, label, pin=PIN):
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    env = u.base_env()
    env["SOFTHSM2_CONF"] = str(conf)
    u.run(["softhsm2-util", "--init-token", "--free", "--label", label,
           "--pin", pin, "--so-pin", SO_PIN], env)
    return env


# ---- the tokens, easiest first ---------------------------------------------

# SoftHSM lacks OAEP with SHA-256 (CKR_ARGUMENTS_BAD), but the provider
# decrypts it with raw RSA and unpads in software: not declared.
SOFTHSM_CANNOT = {}


def setup_softhsm(root):
    _need(SOFTHSM, "softhsm2-util", "pkcs11-tool")
    env = _softhsm_token(root, "softhsm")
    rig = Rig("softhsm", TITLES["softhsm"], root, SOFTHSM, "softhsm", PIN, env,
              cannot=dict(SOFTHSM_CANNOT), packages=["softhsm2"])
    rig.make_keys()
    return rig


def setup_p11kit_proxy(root):
    """p11-kit-proxy.so with a module list of our own (SoftHSM only)."""
    _need(SOFTHSM, P11KIT_PROXY)
    env = _softhsm_token(root, "proxied")
    rig = Rig("p11kit-proxy", TITLES["p11kit-proxy"], root, P11KIT_PROXY,
              "proxied", PIN, env, cannot=dict(SOFTHSM_CANNOT),
              packages=["p11-kit-modules", "softhsm2"])
    mods = root / "modules"
    mods.mkdir()
    (mods / "softhsm2.module").write_text(f"module: {SOFTHSM}\n")
    _holder(rig)
    _bind(rig, mods, P11KIT_MODULES)
    if os.path.isdir("/etc/pkcs11/modules"):
        _bind(rig, mods, "/etc/pkcs11/modules")
    rig.make_keys()
    return rig


def _p11kit_server(rig, sock, provider, token_uri, env):
    server = shutil.which("p11-kit")
    argv = [server, "server", "-f", "-n", sock, "--provider", provider,
            token_uri]
    p = rig.start(argv, rig.root / "p11-kit-server.log", env=env)
    _wait(lambda: os.path.exists(sock) or p.poll() is not None,
          "the p11-kit server socket")
    if p.poll() is not None:
        raise u.CommandFailed("p11-kit server exited:\n" +
                              (rig.root / "p11-kit-server.log").read_text())
    return p


def setup_p11kit_remote(root):
    """p11-kit-client.so -> `p11-kit server` (unix socket) -> SoftHSM."""
    _need(SOFTHSM, P11KIT_CLIENT, "p11-kit")
    if u.sanitizers_enabled():
        raise Unavailable(
            f"p11-kit-client.so {package_version('p11-kit-modules')} reads "
            "past a buffer of its own in C_GetMechanismList (an ASan "
            "heap-buffer-overflow inside the module, not ours): this token "
            "runs in the plain stage")
    server_env = _softhsm_token(root, "remote")
    env = u.base_env()
    sock = root / "p11kit.sock"
    env["P11_KIT_SERVER_ADDRESS"] = f"unix:path={sock}"
    filtered = "filtered by p11-kit 0.24's RPC allow-list"
    rig = Rig("p11kit-remote", TITLES["p11kit-remote"],
              root, P11KIT_CLIENT, "remote", PIN, env,
              cannot=dict(SOFTHSM_CANNOT,
                          ecdh=f"token lacks CKM_ECDH1_DERIVE ({filtered})"),
              packages=["p11-kit", "softhsm2"])
    _p11kit_server(rig, sock, SOFTHSM, "pkcs11:token=remote", server_env)
    rig.make_keys()
    return rig


def setup_nss(root):
    """NSS softokn on a private sql: database (init args via the config)."""
    _need(NSS_SOFTOKN, "certutil", P11KIT_PROXY)
    db = root / "db"
    db.mkdir()
    pw = root / "dbpass.txt"
    pw.write_text(PIN + "\n")
    env = u.base_env()
    u.run(["certutil", "-N", "-d", f"sql:{db}", "-f", pw], env)
    init = f"configdir='sql:{db}' certPrefix='' keyPrefix='' " \
           "secmod='secmod.db' flags="
    rig = Rig("nss", TITLES["nss"], root, NSS_SOFTOKN, "NSS Certificate DB",
              PIN, env, init_args=init, packages=["libnss3"],
              tool_module=P11KIT_PROXY)
    # pkcs11-tool cannot pass C_Initialize arguments: it reaches the
    # softokn through p11-kit-proxy, whose module file can.
    mods = root / "modules"
    mods.mkdir()
    (mods / "nss.module").write_text(
        f"module: {NSS_SOFTOKN}\nx-init-reserved: {init}\n")
    _holder(rig)
    _bind(rig, mods, P11KIT_MODULES)
    rig.make_keys()
    return rig


def _ported(pkg, upto, why):
    """Unavailable unless pkg's Debian version is at most `upto` (a tuple):
    a setup written for Debian 12's version, not yet ported to newer ones."""
    version = package_version(pkg)
    nums = tuple(int(x) for x in version.split(":")[-1].split("+")[0]
                 .split("-")[0].split(".")[:len(upto)] if x.isdigit())
    if nums > upto:
        raise Unavailable(f"not ported to {pkg} {version} yet: {why}")


def setup_opencryptoki(root):
    """openCryptoki's soft token with a private pkcsslotd (mount+IPC ns)."""
    _need(OPENCRYPTOKI, "pkcsslotd")
    _ported("opencryptoki", (3, 8), "3.2x's pkcsslotd (own user, pid and "
            "socket under /run/opencryptoki) fails C_Initialize with "
            "CKR_GENERAL_ERROR in the private setup")
    rig = Rig("opencryptoki", TITLES["opencryptoki"], root, OPENCRYPTOKI,
              "ock", SHORT_PIN, u.base_env(),
              packages=["opencryptoki"],
              cannot={c: "token lacks EC (openCryptoki 3.8 has no EC "
                         "mechanisms)"
                      for c in ("ecdsa", "ecdh", "genpkey-ec")})
    # (dropped by make_keys where the token lists them: 3.23 has EC)
    _holder(rig, ipc=True)
    etc, lib = root / "etc", root / "lib"
    run, log = root / "run", root / "log"
    for d in (etc, lib / "swtok" / "TOK_OBJ",
              run / "lock" / "opencryptoki" / "swtok", run / "opencryptoki",
              log):
        d.mkdir(parents=True, exist_ok=True)
    (etc / "opencryptoki.conf").write_text(
        "version opencryptoki-3.1\nslot 3\n{\nstdll = libpkcs11_sw.so\n}\n")
    for d in (lib, run / "lock", run / "opencryptoki"):
        for dirpath, dirs, _ in os.walk(d):
            shutil.chown(dirpath, group="pkcs11")
            os.chmod(dirpath, 0o770)
    _bind(rig, etc, "/etc/opencryptoki")
    _bind(rig, lib, "/var/lib/opencryptoki")
    _bind(rig, run, "/run")
    _bind(rig, log, "/var/log")
    rig.run(["pkcsslotd"])          # forks; its pid is in /run (= run/)
    # 3.8 writes /run/pkcsslotd.pid, 3.2x /run/opencryptoki/pkcsslotd.pid
    pidfiles = (run / "pkcsslotd.pid", run / "opencryptoki" / "pkcsslotd.pid")

    def pid():
        for f in pidfiles:
            if f.exists() and f.read_text().strip():
                return int(f.read_text().strip())
        return None
    _wait(lambda: pid() is not None, "pkcsslotd's pid file")
    rig.pids.append(pid())
    m = ["pkcs11-tool", "--module", OPENCRYPTOKI, "--slot", "3"]
    rig.run(m + ["--init-token", "--label", "ock", "--so-pin", "87654321"])
    rig.run(m + ["--login", "--login-type", "so", "--so-pin", "87654321",
                 "--init-pin", "--pin", SHORT_PIN])
    rig.make_keys()
    return rig


def _free_port_pair():
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise u.CommandFailed("no free pair of ports")


def setup_tpm2(root):
    """tpm2-pkcs11 on swtpm, through tpm2-abrmd on a private session bus."""
    _need(TPM2_PKCS11, "swtpm", "tpm2-abrmd", "tpm2_ptool", "dbus-daemon",
          "tpm2_getcap")
    state, store = root / "state", root / "store"
    state.mkdir()
    store.mkdir()
    env = u.base_env()
    rig = Rig("tpm2", TITLES["tpm2"], root, TPM2_PKCS11,
              "tpm", PIN, env, packages=["libtpm2-pkcs11-1", "swtpm", "tpm2-abrmd"],
              cannot={"ecdh": "token lacks CKM_ECDH1_DERIVE (tpm2-pkcs11 1.9)"})
    port = _free_port_pair()
    rig.start(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
               "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
               "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
               "--flags", "not-need-init,startup-clear"], root / "swtpm.log")
    bus = root / "dbus.sock"
    rig.start(["dbus-daemon", "--session", "--nofork", "--nopidfile",
               f"--address=unix:path={bus}"], root / "dbus.log")
    _wait(bus.exists, "the private dbus socket")
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
    rig.start(["tpm2-abrmd", "--session", "--allow-root", "--flush-all",
               f"--tcti=swtpm:host=127.0.0.1,port={port}"], root / "abrmd.log")
    tcti = "tabrmd:bus_type=session"
    env.update(TPM2TOOLS_TCTI=tcti, TPM2_PKCS11_TCTI=tcti,
               TPM2_PKCS11_STORE=str(store), HOME=str(root))
    _wait(lambda: u.run(["tpm2_getcap", "properties-fixed"], env,
                        ok=False).returncode == 0, "tpm2-abrmd")
    # swtpm's dictionary-attack policy would lock the PIN for 1000 s
    u.run(["tpm2_dictionarylockout", "--clear-lockout"], env)
    u.run(["tpm2_dictionarylockout", "--setup-parameters", "--max-tries=1000",
           "--recovery-time=1", "--lockout-recovery-time=1"], env)
    u.run(["tpm2_ptool", "init"], env)
    u.run(["tpm2_ptool", "addtoken", "--pid=1", "--label=tpm",
           f"--sopin={SO_PIN}", f"--userpin={PIN}"], env)
    rig.make_keys()
    return rig


TITLES = {
    "softhsm": "SoftHSM v2",
    "p11kit-proxy": "p11-kit-proxy → SoftHSM",
    "p11kit-remote": "p11-kit client → p11-kit server → SoftHSM",
    "nss": "NSS softokn",
    "opencryptoki": "openCryptoki soft token",
    "tpm2": "tpm2-pkcs11 on swtpm + tpm2-abrmd",
    "opensc": "OpenSC over a virtual CAC card (libcacard + vpcd + pcscd)",
}

def _build_vcard_bridge(root):
    """Compile tests/tokens/vcard-vpcd.c (0.2 s) for this run."""
    src = Path(__file__).with_name("vcard-vpcd.c")
    p = subprocess.run(["pkg-config", "--cflags", "--libs", "libcacard"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise Unavailable("libcacard-dev is not installed")
    exe = root / "vcard-vpcd"
    u.run(["gcc", "-O2", "-Wall", "-o", exe, src, *p.stdout.split()],
          u.base_env())
    return exe


def _card_db(root, pin):
    """The card's NSS database: one RSA-2048 key that signs and decrypts."""
    db = root / "carddb"
    db.mkdir()
    env = u.base_env()
    # PBKDF2 iterations are stored per entry at import: 1 keeps each card
    # RSA operation at ~4 ms instead of ~40 ms (test keys only).
    env["NSS_MAX_MP_PBE_ITERATION_COUNT"] = "1"
    pw = root / "cardpin.txt"
    pw.write_text(pin + "\n")
    u.run(["certutil", "-N", "-d", f"sql:{db}", "-f", pw], env)
    key, crt, p12 = root / "card.key", root / "card.crt", root / "card.p12"
    u.run([u.OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
           "-keyout", key, "-out", crt, "-subj", "/CN=p11b-cac", "-days", "30",
           "-addext", "keyUsage=critical,digitalSignature,keyEncipherment"],
          env)
    u.run([u.OPENSSL, "pkcs12", "-export", "-inkey", key, "-in", crt,
           "-name", "card1", "-out", p12, "-passout", "pass:p12"], env)
    u.run(["pk12util", "-i", p12, "-d", f"sql:{db}", "-W", "p12", "-k", pw],
          env)
    key.unlink()
    return db


def setup_opensc(root):
    """OpenSC over a virtual CAC card: libcacard behind vpcd in pcscd, all
    in a private mount + network namespace (pcscd's socket is fixed at
    /run/pcscd, vpcd listens on every address)."""
    _need(OPENSC, "pcscd", VPCD, "pk12util", "gcc", "opensc-tool")
    _ported("pcscd", (1, 9), "the virtual card never shows up in pcscd 2.x "
            "(timed out waiting for the virtual card)")
    exe = _build_vcard_bridge(root)
    db = _card_db(root, SHORT_PIN)
    no_keygen = "token lacks key generation (a CAC card is read-only in " \
                "OpenSC)"
    no_ec = "token lacks EC (libcacard's CAC applet is RSA only)"
    rig = Rig("opensc", TITLES["opensc"], root, OPENSC, "p11b-cac",
              SHORT_PIN, u.base_env(), packages=["opensc-pkcs11", "pcscd",
                                                 "vsmartcard-vpcd",
                                                 "libcacard0"],
              cannot={"genpkey-rsa": no_keygen, "genpkey-ec": no_keygen,
                      "ecdsa": no_ec, "ecdh": no_ec})
    _need_root(rig.title)
    p = rig.start(["unshare", "--mount", "--net", "--propagation", "private",
                   "sleep", "infinity"], root / "holder.log")
    rig.prefix = ["nsenter", "-t", str(p.pid), "--mount", "--net", "--root", "--"]
    _wait(lambda: os.readlink(f"/proc/{p.pid}/ns/net")
          != os.readlink("/proc/self/ns/net"), "the namespace holder")
    env = u.base_env()
    rig.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"],
            env=env)
    rig.run(["ip", "link", "set", "lo", "up"], env=env)
    port = 35963
    conf = root / "reader.conf.d"
    conf.mkdir()
    (conf / "vpcd").write_text(
        f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:{port}\n'
        f"LIBPATH {VPCD}\nCHANNELID {port}\n")
    rig.start(["pcscd", "-f", "-c", conf], root / "pcscd.log", env=env)
    rig.start([exe, port, db, "card1"], root / "card.log", env=env)
    _wait(lambda: rig.run(["opensc-tool", "-a"], env=env,
                          ok=False).returncode == 0, "the virtual card",
          timeout=20)
    # OpenSC's CAC emulation: ids are 2 bytes, labels fixed
    rig.keys["rsa"] = "0001"
    rig.labels["rsa"] = "CAC ID Certificate"
    return rig


SETUPS = {
    "softhsm": setup_softhsm,
    "p11kit-proxy": setup_p11kit_proxy,
    "p11kit-remote": setup_p11kit_remote,
    "nss": setup_nss,
    "opencryptoki": setup_opencryptoki,
    "tpm2": setup_tpm2,
    "opensc": setup_opensc,
}


def package_version(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "not installed"
