"""The debug log's levels do what docs/HOWTO.md ("The debug log") says.

One ECDSA signature through the provider at each level; each level's log
must hold what the table promises and nothing of the level above.
"""

import os
import re

import pytest

import p11b_util as u

CALL = re.compile(r"(?<![A-Za-z0-9_])C_[A-Za-z]+\(.*\) -> CKR_[A-Z_]+, \d+ us$")
ATTR = re.compile(r":\s+CKA_[A-Z_0-9]+: \d+ bytes$")
SUMMARY = re.compile(r"Cryptoki calls of this process: (\d+) \((.*)\)$")


def sign_at(token, tmp_path, level):
    env = u.with_log(token.env, tmp_path / f"level{level}.log", level)
    msg = tmp_path / "msg.bin"
    msg.write_bytes(os.urandom(100))
    token.ossl("dgst", "-sha256", "-sign", token.uri("p256", "private"),
               "-out", tmp_path / "sig.bin", msg, env=env)
    return u.read_log(env).splitlines()


@pytest.mark.parametrize("level", [1, 2, 3])
def test_debug_log_level_shows_what_the_docs_say(token, tmp_path, level):
    lines = sign_at(token, tmp_path, level)
    prefix = re.compile(r"^p11bridge\[\d+/\d+\] \S+Z L[123] \S+:\d+ \w+: ")
    assert all(prefix.match(line) for line in lines), lines
    calls = [line for line in lines if CALL.search(line)]
    attrs = [line for line in lines if ATTR.search(line)]
    summary = [m for line in lines if (m := SUMMARY.search(line))]
    if level == 1:
        # a good signature: no error, so nothing at level 1
        assert lines == [], lines
        return
    assert any(re.search(r"C_SignInit\(slot \d+, CKM_ECDSA\) -> CKR_OK", c)
               for c in calls), calls
    assert any(re.search(r"C_Sign\(slot \d+, 32 bytes\) -> CKR_OK", c)
               for c in calls), calls
    assert len(summary) == 1, lines
    counts = dict(kv.split("=") for kv in summary[0].group(2).split())
    assert int(counts["C_Sign"]) == 1
    assert int(summary[0].group(1)) == sum(map(int, counts.values()))
    assert int(summary[0].group(1)) >= len(calls) > 0
    if level == 2:
        assert attrs == [], attrs
    else:
        assert attrs, "level 3 logged no attribute read"
