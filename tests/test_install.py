"""`make install`: where the module goes, under which name, and alone.

Runs `make install DESTDIR=<tmp>` (and `make uninstall`) from the build
that is being tested, and checks what a user gets (README, "Quick start"):
- the module, and nothing else, at $(modulesdir)/$(MODULE_NAME).so: no
  libtool .la beside it;
- modulesdir follows the rule configure documents: libcrypto's modulesdir
  when no --prefix was given, LIBDIR/ossl-modules under a --prefix given,
  --with-modulesdir over both;
- --with-module-name=NAME installs NAME.so (so it can sit beside
  pkcs11-provider's pkcs11.so), and `openssl list -providers` loads the
  installed file from the config README shows, and from the command line.

The build directory is P11BRIDGE_BUILDDIR (`make check` exports it), else
the one P11BRIDGE_PROVIDER (.../.libs/pkcs11.so) was built in. Every install
goes under a DESTDIR in tmp_path: nothing is written outside it.
"""

import filecmp
import os
import shlex
import shutil
from pathlib import Path

import pytest

import p11b_util as u

SRC = Path(__file__).resolve().parent.parent
NAME = "p11bridge PKCS#11 provider"
# Variables of the user's make that must not reach the nested make (a
# jobserver whose descriptors are closed, a DESTDIR of theirs).
_MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR",
              "GNUMAKEFLAGS")


@pytest.fixture(scope="module")
def build():
    d = os.environ.get("P11BRIDGE_BUILDDIR")
    if not d:
        prov = os.environ.get("P11BRIDGE_PROVIDER")
        assert prov, ("P11BRIDGE_BUILDDIR (or P11BRIDGE_PROVIDER) must name "
                      "the build to install from: run with `make check`")
        d = Path(prov).resolve().parent.parent
    d = Path(d)
    assert (d / "Makefile").exists(), f"{d} is not a configured build"
    return d


def make_env():
    return {k: v for k, v in u.base_env().items() if k not in _MAKE_VARS}


def make(build, *args, timeout=120):
    mk = u.require_program("make", "make")
    return u.run([mk, "-s", "--no-print-directory", "-C", build, *args],
                 make_env(), timeout=timeout)


def make_var(build, name, *overrides):
    """A variable of build's Makefile, expanded by make itself (-o Makefile:
    without remaking the Makefile, whose sources a copy may not have)."""
    rule = "p11b-print-var: ; @echo '$(" + name + ")'"
    p = make(build, "-o", "Makefile", "--eval", rule, *overrides,
             "p11b-print-var")
    return p.stdout.strip()


def install(build, destdir, *overrides):
    assert destdir.is_absolute() and str(destdir) != "/"
    make(build, "install", f"DESTDIR={destdir}", *overrides)


def files_under(root):
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def configure_args(build):
    out = u.run(["sh", str(build / "config.status"), "--config"],
                make_env()).stdout
    return shlex.split(out)


def test_install_puts_the_module_alone_in_modulesdir(build, tmp_path):
    modulesdir = make_var(build, "modulesdir")
    name = make_var(build, "MODULE_NAME")
    assert name, "configure did not set MODULE_NAME"
    dest = tmp_path / "dest"
    install(build, dest)
    module = dest / modulesdir.lstrip("/") / f"{name}.so"
    # the module alone in modulesdir, and the p11bridge-info command
    tool = dest / make_var(build, "bindir").lstrip("/") / "p11bridge-info"
    assert files_under(dest) == sorted([module, tool]), (
        f"make install wrote {[str(p) for p in files_under(dest)]}, "
        f"expected only {module} and {tool}")
    assert filecmp.cmp(module, build / ".libs" / "pkcs11.so", shallow=False)
    make(build, "uninstall", f"DESTDIR={dest}")
    assert files_under(dest) == [], "make uninstall left files behind"


def test_modulesdir_follows_the_prefix_rule(build):
    """The build's own configure run: its modulesdir is what README says."""
    args = configure_args(build)
    modulesdir = make_var(build, "modulesdir")
    given = [a.split("=", 1)[1] for a in args
             if a.startswith("--with-modulesdir=")]
    if given:
        assert modulesdir == given[-1]
    elif any(a.startswith("--prefix") for a in args):
        assert modulesdir == make_var(build, "libdir") + "/ossl-modules"
    else:
        pc = u.run([u.require_program("pkg-config", "pkg-config"),
                    "--variable=modulesdir", "libcrypto"], make_env())
        assert modulesdir == pc.stdout.strip(), (
            f"configure {args}: no --prefix, so the module belongs where "
            f"libcrypto loads modules from")


def configure_cache(build, path):
    """A config.cache with the results of build's configure run (from its
    config.log), so that configuring a copy takes seconds, not half a
    minute. The precious variables (ac_cv_env_*: CC, CFLAGS...) are left
    out: they belong to that run's command line."""
    log = build / "config.log"
    lines = []
    if log.exists():
        text = log.read_text(errors="replace")
        start = text.find("## Cache variables. ##")
        end = text.find("## Output variables. ##", start)
        if start >= 0 and end > start:
            for line in text[start:end].splitlines():
                name = line.split("=", 1)[0]
                if ("=" in line and name.isidentifier()
                        and not name.startswith("ac_cv_env_")):
                    lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_configure_takes_module_name_and_prefix(build, tmp_path):
    """A configure run of its own, on a copy of the generated files (so an
    in-tree build or a read-only source tree do not matter). Only the
    Makefile is made from it: that is where the two settings go."""
    if not (SRC / "configure").exists():
        pytest.fail("no configure script in the source tree: run "
                    "autoreconf -fi (scripts/build.sh does)", pytrace=False)
    src = tmp_path / "src"
    src.mkdir()
    for f in ("configure", "Makefile.in", "config.h.in"):
        shutil.copy2(SRC / f, src / f)
    shutil.copytree(SRC / "build-aux", src / "build-aux")
    (src / "src" / "provider").mkdir(parents=True)
    shutil.copy2(SRC / "src" / "provider" / "provider.c",
                 src / "src" / "provider" / "provider.c")
    cache = configure_cache(build, tmp_path / "config.cache")
    prefix = "/opt/p11b-install-test"
    u.run(["sh", "./configure", "-q", "--no-create", f"--cache-file={cache}",
           f"--prefix={prefix}", "--with-module-name=p11bridge.so"],
          make_env(), cwd=src)
    u.run(["sh", "./config.status", "-q", "Makefile"], make_env(), cwd=src)
    assert make_var(src, "MODULE_NAME") == "p11bridge"
    assert make_var(src, "modulesdir") == f"{prefix}/lib/ossl-modules"
    # The variable as make sees it: `make install prefix=...` moves it too.
    assert make_var(src, "modulesdir", "prefix=/elsewhere") == \
        "/elsewhere/lib/ossl-modules"


def test_openssl_loads_the_module_installed_under_another_name(
        build, tmp_path, softhsm_lib):
    modulesdir = make_var(build, "modulesdir")
    dest = tmp_path / "dest"
    install(build, dest, "MODULE_NAME=p11bridge")
    installed = dest / modulesdir.lstrip("/")
    assert sorted(p.name for p in installed.iterdir()) == ["p11bridge.so"]
    # README's config for a module installed as p11bridge.so; OPENSSL_MODULES
    # stands for the modules directory the DESTDIR install went into.
    conf = tmp_path / "openssl.cnf"
    conf.write_text(
        "openssl_conf = openssl_init\n"
        "[openssl_init]\nproviders = provider_sect\n"
        "[provider_sect]\ndefault = default_sect\np11bridge = p11bridge_sect\n"
        "[default_sect]\nactivate = 1\n"
        "[p11bridge_sect]\nmodule = p11bridge.so\n"
        f"pkcs11-module-path = {softhsm_lib}\nactivate = 1\n")
    softhsm_conf = tmp_path / "softhsm2.conf"
    (tmp_path / "tokens").mkdir()
    softhsm_conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\n"
                            "objectstore.backend = file\n")
    env = u.provider_env(conf, softhsm_conf, tmp_path / "p11bridge.log")
    env["OPENSSL_MODULES"] = str(installed)
    p = u.openssl(env, "list", "-providers")
    info = providers(p.stdout).get("p11bridge", {})
    assert info.get("name") == NAME and info.get("status") == "active", \
        p.stdout
    # The command-line form, with no config file at all.
    env["OPENSSL_CONF"] = str(tmp_path / "empty.cnf")
    (tmp_path / "empty.cnf").write_text("")
    p = u.openssl(env, "list", "-providers", "-provider", "p11bridge",
                  "-provider", "default")
    info = providers(p.stdout).get("p11bridge", {})
    assert info.get("name") == NAME and info.get("status") == "active", \
        p.stdout


def providers(stdout):
    """{provider: {field: value}} from `openssl list -providers`."""
    out, current = {}, None
    for line in stdout.splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            current = out.setdefault(line.strip(), {})
        elif line.startswith("    ") and current is not None and ":" in line:
            k, v = line.strip().split(":", 1)
            current[k] = v.strip()
    return out
