"""Threads and fork: tests/tools/p11b-stress hammers the provider.

The helper's command line (see the comment at the top of p11b-stress.c):

    p11b-stress --uri URI [--uri URI ...] --threads N --iterations M
                [--forks K [--fork-after-load]]

The parent always loads every URI once first. Then N threads do M loads
each; with --forks K, K children are forked after the threads finish (or,
with --fork-after-load, right after the first loads, while the parent's
threads run) and each child checks its inherited keys and runs the same
workload. Exit 0 and "stress ok: L loads, T threads, K forks" on success.

It loads the provider through OPENSSL_CONF like openssl does. Afterwards
the level-2 debug log must show exactly one C_Initialize in each process,
the parent and every child: no re-initialisation storm in threads, and
one re-initialisation per child after fork.
"""

import time

import pytest

import p11b_util as u

THREADS, ITERATIONS, FORKS = 8, 50, 4


def stress_uris(token):
    return [token.uri("rsa2048", "private"), token.uri("p256", "private"),
            token.uri("p384", "public")]


MODES = {
    "threads": [],
    "forks": ["--forks", str(FORKS)],
    "fork-after-load": ["--forks", str(FORKS), "--fork-after-load"],
}


@pytest.mark.parametrize("mode", list(MODES))
def test_stress(token, tools_dir, tmp_path, record_time, mode):
    tool = tools_dir / "p11b-stress"
    if not tool.exists():
        pytest.fail(f"{tool} does not exist: build it with `make check`",
                    pytrace=False)
    env = token.fresh_env(tmp_path, level=2)
    argv = [tool, "--threads", THREADS, "--iterations", ITERATIONS,
            *MODES[mode]]
    for uri in stress_uris(token):
        argv += ["--uri", uri]
    t0 = time.monotonic()
    p = token.run(argv, env=env, timeout=1200)  # ok=True: exit 0 or fail
    record_time(f"p11b-stress {mode}", time.monotonic() - t0)
    forks = FORKS if MODES[mode] else 0
    assert f", {THREADS * (forks + 1)} threads, {forks} forks" in p.stdout, \
        p.stdout
    assert "stress ok:" in p.stdout, p.stdout

    log = u.read_log(env)
    # A child calls C_Initialize once; a library that kept the parent's
    # state answers CKR_CRYPTOKI_ALREADY_INITIALIZED, which is fine.
    inits = u.calls_by_pid(log, "C_Initialize")
    users = u.pids_calling_cryptoki(log)
    assert users, f"no Cryptoki call in the log:\n{log[-2000:]}"
    storm = {pid: n for pid, n in inits.items() if n != 1}
    assert not storm, f"C_Initialize more than once in a process: {storm}"
    missing = users - set(inits)
    assert not missing, f"processes calling Cryptoki without C_Initialize: " \
                        f"{sorted(missing)}"

    parent = p.pid
    assert inits.get(parent) == 1, \
        f"the parent (pid {parent}) loads first, so it initialises once: " \
        f"{inits}"
    children = set(inits) - {parent}
    assert len(children) == forks, \
        f"expected {forks} children to initialise once each: {inits}"


def test_sixteen_threads_sign_with_shared_and_separate_keys(token, tools_dir,
                                                           tmp_path):
    """16 threads sign with one key and with different keys (RSA, ECDSA);
    every signature is checked with the default provider's copy of the
    public key; then the same in forked children while the parent signs."""
    tool = tools_dir / "p11b-stress"
    env = token.fresh_env(tmp_path, level=1)
    uris = [token.uri("rsa2048", "private"), token.uri("p256", "private"),
            token.uri("p384", "private")]
    for argv in (["--uri", uris[0]],
                 [a for uri in uris for a in ("--uri", uri)],
                 [a for uri in uris for a in ("--uri", uri)] +
                 ["--forks", "3", "--fork-after-load"]):
        p = token.run([tool, "--sign", "--threads", "16", "--iterations",
                       "25", *argv], env=env, timeout=600)
        assert "stress ok:" in p.stdout, p.stdout
        assert "signatures verified in this process: 400" in p.stdout, \
            p.stdout
