"""Finding one key among 10,000 objects: the search must be narrow.

big_token holds 10,000 public CKO_DATA objects and one RSA key pair
("needle", id ab). Loading the needle must search with a template that
names the id or label, so that C_FindObjects hands back the key pair's
handles (private and public object: one search finds both), not thousands. Wall time is printed, never asserted.
"""

import time

import pytest

import p11b_util as u

CASES = {"id": {"id": "ab"}, "label": {"object": "needle"}}


@pytest.mark.parametrize("by", sorted(CASES))
def test_needle_load_is_a_narrow_search(big_token, tmp_path, record_time,
                                        by):
    env = big_token.fresh_env(tmp_path, level=2)
    uri = u.make_uri(token=big_token.label, type="private", **CASES[by])
    t0 = time.monotonic()
    p = big_token.ossl("pkey", "-in", uri, "-pubout", env=env)
    wall = time.monotonic() - t0
    print(f"\nload of the needle by {by} among 10,000 objects: {wall:.3f} s")
    record_time(f"big_token: openssl pkey, needle by {by}", wall)
    assert u.normalize_spki(p.stdout.encode()) == \
        big_token.keys["needle"].spki

    log = u.read_log(env)
    finds = u.cryptoki_calls(log, "C_FindObjects")
    found = u.found_counts(log)
    assert 1 <= len(finds) <= 2, \
        f"{len(finds)} C_FindObjects calls:\n" + "\n".join(finds)
    assert len(found) == len(finds), "C_FindObjects lines without 'N found'"
    assert all(n <= 2 for n in found), \
        f"C_FindObjects returned {found} handles: the search is not narrow"
    # Every search names what the URI names (or the key's CKA_ID).
    inits = u.cryptoki_calls(log, "C_FindObjectsInit")
    assert inits, "no C_FindObjectsInit in the log"
    narrowing = "CKA_ID" if by == "id" else "CKA_LABEL"
    assert narrowing in inits[0], \
        f"first template does not name {narrowing}: {inits[0]}"
    for line in inits[1:]:
        assert "CKA_ID" in line or "CKA_LABEL" in line, line
