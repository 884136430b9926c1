"""Turn bench/run's results (one TSV) into the ratio table on stdout and
docs/PERFORMANCE.md: `bench.py report TSV MARKDOWN [--smoke]`."""

import collections
import statistics
import sys
from pathlib import Path

from tsvdata import tsv_read

CASE_ORDER = ["rsa2048-pkcs1", "rsa2048-pss", "rsa3072-pkcs1", "rsa3072-pss",
              "p256-ecdsa", "p384-ecdsa", "ed25519", "rsa2048-decrypt",
              "p256-ecdh"]
TLS_CASE = {"rsa2048": "rsa2048-pss", "p256": "p256-ecdsa"}
# Calls a warm operation should not make (issue 6, "the hot path").
UNWANTED = {"C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal",
            "C_GetMechanismInfo", "C_GetMechanismList", "C_OpenSession",
            "C_CloseSession", "C_Login", "C_GetTokenInfo", "C_GetSlotInfo",
            "C_GetSlotList", "C_CopyObject"}


class Results:
    def __init__(self, rows):
        self.meta = {}
        self.summary = {}                       # (case, ct, thr) -> row
        self.rounds = collections.defaultdict(dict)  # (case, thr) -> ct -> [..]
        self.load = {}                          # (tag, path, phase) -> row
        self.calls = collections.defaultdict(lambda: [0, {}])
        self.tls = collections.defaultdict(list)  # (name, kind) -> rows
        self.tlsprof = {}       # (name, kind) -> Ir: total, token, sign
        self.startup, self.startup_calls = {}, None
        self.prof = collections.defaultdict(list)
        self.keyobj, self.verified = {}, 0
        for r in rows:
            getattr(self, "add_" + r[0], lambda r: None)(r)

    def add_meta(self, r):
        self.meta[r[1]] = r[2]

    def add_summary(self, r):
        self.summary[(r[1], r[2], int(r[3]))] = {
            "tput": float(r[6]), "p50": float(r[7]), "p99": float(r[8]),
            "cpu": float(r[10])}

    def add_round(self, r):
        per = self.rounds[(r[1], int(r[3]))]
        per.setdefault(r[2], []).append(float(r[6]))
        per.setdefault(r[2] + " cpu", []).append(float(r[7]))

    def add_load(self, r):
        self.load[(r[1], r[2], r[3])] = {"n": int(r[4]), "p50": float(r[5]),
                                         "p99": float(r[6]), "min": float(r[7])}

    def add_calls(self, r):
        entry = self.calls[r[1]]
        if r[3] == "-":
            entry[0] = int(r[2])
        else:
            entry[1][r[3]] = int(r[4])

    def add_tls(self, r):
        self.tls[(r[1], r[2])].append((int(r[4]) / float(r[5]), float(r[6])))

    def add_tlsprof(self, r):
        self.tlsprof[(r[1], r[2])] = [float(x) for x in r[4:7]]

    def add_startup(self, r):
        self.startup[r[1]] = (float(r[3]), float(r[4]))

    def add_startup_calls(self, r):
        self.startup_calls = int(r[1])

    def add_keyobj(self, r):
        self.keyobj[r[1]] = r[2]

    def add_verified(self, r):
        self.verified += int(r[1])

    def __getattr__(self, name):
        if name.startswith(("add_prof", "add_perf", "add_syscalls")):
            return lambda r: self.prof[r[0]].append(r[1:])
        raise AttributeError(name)

    def ratio(self, case, thr, against="limit", cpu=False):
        """Median of per-round ratios: each pair ran side by side. With
        cpu, the ratio of CPU time per operation (against ÷ provider)."""
        rounds = self.rounds.get((case, thr), {})
        sfx = " cpu" if cpu else ""
        a, b = rounds.get("provider" + sfx), rounds.get(against + sfx)
        if not a or not b:
            return None
        return statistics.median((y / x if cpu else x / y)
                                 for x, y in zip(a, b))

    def spread(self, case, thr):
        """Quartiles of the per-round provider ÷ limit ratios, as text."""
        rounds = self.rounds.get((case, thr), {})
        a, b = rounds.get("provider"), rounds.get("limit")
        if not a or not b or len(a) < 4:
            return ""
        q = statistics.quantiles([x / y for x, y in zip(a, b)], n=4)
        return f" (rounds' quartiles {q[0]:.2f}–{q[2]:.2f})"

    def ir_ratio(self, case):
        """Limit ÷ provider instructions per whole operation (callgrind)."""
        tot = {r[0]: float(r[2]) for r in self.prof["prof_total"]}
        p, l = tot.get(case + "-provider"), tot.get(case + "-limit")
        return l / p if p and l else None

    def threads(self):
        return sorted({k[2] for k in self.summary})

    def cases(self):
        seen = {k[0] for k in self.summary}
        return [c for c in CASE_ORDER if c in seen]


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def status(ok):
    return "-" if ok is None else ("met" if ok else "**missed**")


def targets(res):
    """(target, measured, met) rows for issue 6's targets."""
    out = []
    for case, want, what in (("p256-ecdsa", 0.95, "ECDSA P-256 sign"),
                             ("rsa2048-pkcs1", 0.98, "RSA-2048 PKCS#1 sign"),
                             ("rsa2048-pss", 0.98, "RSA-2048 PSS sign"),
                             ("rsa2048-decrypt", 0.98, "RSA-2048 decrypt")):
        for thr in (1, 2):
            r = res.ratio(case, thr)
            ir = res.ir_ratio(case) if thr == 1 else None
            out.append((f"{what}, {thr} thread{'s' * (thr > 1)}: "
                        f"≥ {want}× limit",
                        f"{fmt(r)}×{res.spread(case, thr)}; by CPU time "
                        f"{fmt(res.ratio(case, thr, cpu=True))}×" +
                        (f"; by instruction count {ir:.3f}×" if ir else ""),
                        None if r is None else r >= want))
    for tag in sorted({k[0] for k in res.load}, key=lambda t: int(t)):
        p, d = res.load.get((tag, "provider", "warm")), \
            res.load.get((tag, "direct", "warm"))
        if p and d:
            diff = p["p50"] - d["p50"]
            out.append((f"warm key load, {tag} objects: ≤ C_FindObjects "
                        "+ 0.1 ms", f"{p['p50']:.3f} ms vs {d['p50']:.3f} ms "
                        f"({diff:+.3f} ms)", diff <= 0.1))
    for tag, (ops, calls) in sorted(res.calls.items()):
        if tag.startswith("load-warm"):
            n = sum(calls.values())
            out.append((f"repeated loads ({tag.split('=')[-1]} objects) make "
                        "no token call", f"{n} calls in {ops} loads", n == 0))
    for name, case in TLS_CASE.items():
        tok, fil = res.tls.get((name, "token")), res.tls.get((name, "file"))
        lim = res.summary.get((case, "limit", 1))
        if tok and fil and lim:
            t = statistics.median(c for _, c in tok)
            f = statistics.median(c for _, c in fil)
            bound = f + lim["p50"] + 20
            out.append((f"TLS {name}: server CPU/handshake ≤ file + token "
                        "sign + 20 µs", f"{t:.0f} µs vs {f:.0f} + "
                        f"{lim['p50']:.0f} + 20 = {bound:.0f} µs", t <= bound))
    pace = ir_per_us(res)
    for name in sorted({k[0] for k in res.tlsprof}):
        t, f = res.tlsprof.get((name, "token")), res.tlsprof.get((name, "file"))
        if t and f and pace:
            over = (t[0] - f[0]) - (t[1] - f[2])
            out.append((f"TLS {name}, by instruction count: what the server "
                        "spends beyond the token's own signing ≤ 20 µs",
                        f"{over:,.0f} Ir/handshake ≈ {over / pace:.0f} µs",
                        over / pace <= 20))
    if res.startup_calls is not None:
        out.append(("startup: no PKCS#11 call for `openssl list -providers`",
                    f"{res.startup_calls} C_ lines in the level-3 log",
                    res.startup_calls == 0))
    if "with" in res.startup and "without" in res.startup:
        d = res.startup["with"][0] - res.startup["without"][0]
        out.append(("startup: ≤ 2 ms over OpenSSL alone",
                    f"{d:+.2f} ms (median {res.startup['with'][0]:.2f} vs "
                    f"{res.startup['without'][0]:.2f} ms)", d <= 2))
    return out


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def ops_table(res):
    rows = []
    for case in res.cases():
        for thr in res.threads():
            cells = [case, thr]
            for ct in ("provider", "limit", "software"):
                s = res.summary.get((case, ct, thr))
                cells += ([f"{s['tput']:.0f}", f"{s['p50']:.0f}",
                           f"{s['p99']:.0f}", f"{s['cpu']:.0f}"]
                          if s else ["-"] * 4)
            cells += [fmt(res.ratio(case, thr)),
                      fmt(res.ratio(case, thr, cpu=True)),
                      fmt(res.ratio(case, thr, "software"))]
            rows.append(cells)
    head = ["case", "thr"]
    for ct in ("provider", "limit", "software"):
        head += [f"{ct} ops/s", "p50 µs", "p99 µs", "CPU µs/op"]
    return table(head + ["provider ÷ limit", "same, by CPU time",
                         "provider ÷ software"], rows)


def calls_table(res):
    rows = []
    for tag, (ops, calls) in sorted(res.calls.items()):
        per = ", ".join(f"{fn} {n / ops:.2f}" for fn, n in
                        sorted(calls.items(), key=lambda x: -x[1])) or "none"
        bad = sorted(fn for fn in calls if fn in UNWANTED)
        rows.append((tag, ops, per, ", ".join(bad) or "none"))
    return table(["measurement", "operations", "token calls per operation",
                  "calls a warm path should not make"], rows)


def load_table(res):
    rows = []
    for tag in sorted({k[0] for k in res.load}, key=lambda t: int(t)):
        g = lambda p, ph: res.load.get((tag, p, ph))  # noqa: E731
        pc, dc, pw, dw = (g("provider", "cold"), g("direct", "cold"),
                          g("provider", "warm"), g("direct", "warm"))
        rows.append((tag, fmt(pc and pc["p50"], ".2f"),
                     fmt(dc and dc["p50"], ".2f"),
                     f"{pw['p50']:.3f} / {pw['p99']:.3f}" if pw else "-",
                     f"{dw['p50']:.3f} / {dw['p99']:.3f}" if dw else "-",
                     fmt(pw and dw and pw["p50"] - dw["p50"], "+.3f")))
    return table(["objects", "cold: provider ms", "cold: direct ms",
                  "warm: provider p50 / p99 ms", "warm: C_FindObjects p50 / "
                  "p99 ms", "warm difference ms"], rows)


def tls_table(res):
    rows = []
    for (name, kind), v in sorted(res.tls.items()):
        rows.append((name, kind, len(v),
                     f"{statistics.median(h for h, _ in v):.0f}",
                     f"{statistics.median(c for _, c in v):.0f}"))
    return table(["key", "key source", "rounds", "full handshakes/s",
                  "server CPU µs / handshake"], rows)


def ir_per_us(res):
    """This machine's pace on token work: the limit's P-256 signing, Ir in
    SoftHSM per µs of CPU time (to read Ir differences as time)."""
    tok = {r[0]: float(r[1]) for r in res.prof["prof_token"]}
    lim = res.summary.get(("p256-ecdsa", "limit", 1))
    ir = tok.get("p256-ecdsa-limit")
    return ir / lim["cpu"] if ir and lim and lim["cpu"] else None


def evp_floor(res, totals, token, math):
    """What the libssl way of signing costs with OpenSSL's own key, and
    the best provider ÷ limit ratio that leaves."""
    soft, prov = totals.get("p256-ecdsa-software"), \
        totals.get("p256-ecdsa-provider")
    lim = totals.get("p256-ecdsa-limit")
    if not soft or not math.get("p256-ecdsa-software") or not prov or not lim:
        return ""
    floor = soft[1] - math["p256-ecdsa-software"]
    mine = prov[1] - token.get("p256-ecdsa-provider", 0)
    limit_own = lim[1] - token.get("p256-ecdsa-limit", 0)
    pace, lsum = ir_per_us(res), res.summary.get(("p256-ecdsa", "limit", 1))
    text = (f"\nThe floor: with a default-provider key, the same EVP calls "
            f"(a fresh `EVP_DigestSignInit_ex` and `EVP_DigestSign` per "
            f"operation, as libssl makes them) cost {floor:,.0f} Ir per P-256 "
            f"signature besides the ECDSA arithmetic (`ECDSA_do_sign_ex`). "
            f"Through the provider, everything but the token's own calls "
            f"costs {mine:,.0f} Ir; the limit's own work (hash, two calls) "
            f"{limit_own:,.0f} Ir.")
    if pace and lsum:
        best = lsum["cpu"] / (lsum["cpu"] + (floor - limit_own) / pace)
        text += (f" Even a provider that cost nothing beyond OpenSSL's own "
                 f"EVP work would reach about {best:.2f}× the limit here "
                 f"(at {pace:,.0f} Ir/µs, the limit's {lsum['cpu']:.0f} µs "
                 "per signature).")
    return text


def tlsprof_section(res):
    if not res.tlsprof:
        return ""
    rows, pace = [], ir_per_us(res)
    for (name, kind), (total, token, sign) in sorted(res.tlsprof.items()):
        rows.append((name, kind, f"{total:,.0f}", f"{token:,.0f}",
                     f"{sign:,.0f}"))
    out = ["\nThe same servers under callgrind (`bench.py tlsprof`: the "
           "difference of a 50- and a 10-handshake run, so start-up cancels "
           "out), instructions per handshake — free of the noise other "
           "processes add to CPU time:\n",
           table(["key", "key source", "server Ir / handshake",
                  "in the token's C_ calls", "in `EVP_DigestSign` "
                  "(the signature, token included)"], rows)]
    for name in sorted({k[0] for k in res.tlsprof}):
        t, f = res.tlsprof.get((name, "token")), res.tlsprof.get((name, "file"))
        if not t or not f:
            continue
        over = (t[0] - f[0]) - (t[1] - f[2])
        us = f" ≈ {over / pace:.0f} µs at {pace:,.0f} Ir/µs (the pace of " \
             "the limit's P-256 signing)" if pace else ""
        out.append(f"\n{name}: the token key costs the server {t[0] - f[0]:,.0f}"
                   f" Ir more per handshake; the token's own signing "
                   f"accounts for {t[1] - f[2]:,.0f} of them (its C_ calls "
                   f"minus the software signature it replaces); the rest, "
                   f"{over:,.0f} Ir{us}, is the provider and OpenSSL's "
                   "handling of a provider key.")
    return "\n".join(out)


def profile_section(res):
    out = []
    totals = {r[0]: (int(r[1]), float(r[2]), float(r[3]))
              for r in res.prof["prof_total"]}
    math = {r[0]: float(r[4]) for r in res.prof["prof_total"] if len(r) > 4}
    token = {r[0]: float(r[1]) for r in res.prof["prof_token"]}
    if totals:
        rows = [(run, ops, f"{ir:,.0f}", f"{token.get(run, 0):,.0f}",
                 f"{init:,.0f}") for run, (ops, ir, init) in totals.items()]
        out.append("Instructions (callgrind `Ir`) per operation in the "
                   "measured threads; a run named `overhead` leaves out "
                   "everything inside the token's own calls (`C_SignInit` "
                   "and `C_Sign`, or `C_DeriveKey`, `C_GetAttributeValue` "
                   "and `C_DestroyObject`).\n")
        out.append(table(["callgrind run", "operations", "Ir per operation",
                          "of which inside the token's C_ calls",
                          "`EVP_DigestSignInit_ex` (inclusive)"], rows))
        out.append(evp_floor(res, totals, token, math))
    for kind, title in (("prof_own", "inclusive costs of the provider's own "
                         "functions"), ("prof_incl", "inclusive costs"),
                        ("prof_self", "self costs")):
        by_run = collections.defaultdict(list)
        for r in res.prof[kind]:
            by_run[r[0]].append(r[1:])
        for run, entries in by_run.items():
            if not run.endswith("overhead"):
                continue
            out.append(f"\nTop {title} in `{run}` (Ir per operation, "
                       "the token's own calls excluded):\n")
            out.append(table(["#", "function", "object", "Ir / op"],
                             [(e[0], f"`{e[1]}`", e[2], f"{float(e[3]):,.0f}")
                              for e in entries]))
    sysc = collections.defaultdict(list)
    for r in res.prof["syscalls"]:
        if r[1] != "-":
            sysc[r[0]].append(f"{r[1]} {float(r[2]):.1f}")
    if res.prof["syscalls"]:
        out.append("\nSystem calls per operation (`strace -f -c`, the "
                   "difference of two runs): " + "; ".join(
                       f"{run}: {', '.join(sysc.get(run)) or 'none'}"
                       for run in sorted({r[0] for r in res.prof["syscalls"]})))
    perf = collections.defaultdict(list)
    for r in res.prof["perf_dso"]:
        perf[r[0]].append(f"{r[1]} {r[2]}%")
    for run, items in perf.items():
        out.append(f"\n`perf record -e cpu-clock`, {run}: " + ", ".join(items))
    return "\n".join(out)


def closing_note(res, tg):
    met = [f"{w} ({g})" for w, g, ok in tg if ok]
    missed = [f"{w} ({g})" for w, g, ok in tg if ok is False]
    out = [f"Met: {'; '.join(met) or 'none'}.", "",
           f"Missed: {'; '.join(missed) or 'none'}."]
    top = [r for r in res.prof["prof_incl"] if r[0].endswith("overhead")]
    if missed and top:
        out += ["", "Where the provider's own time goes (the top inclusive "
                "entries of the callgrind profile, the token's C_ calls "
                "excluded): " + ", ".join(
                    f"`{r[2]}` {float(r[4]):,.0f} Ir" for r in top[:8]
                    if r[0] == top[0][0]) + " per operation."]
    return "\n".join(out)


def main(argv):
    tsv, md = argv[0], argv[1]
    smoke = "--smoke" in argv
    res = Results(tsv_read(tsv))
    tg = targets(res)
    print("\nprovider ÷ limit: throughput (and by CPU time per operation), "
          "median of per-round ratios; 1 = as fast as the token allows")
    print(f"{'case':<16}" + "".join(f"{str(t) + ' thr':>16}"
                                    for t in res.threads()))
    for case in res.cases():
        print(f"{case:<16}" + "".join(
            f"{fmt(res.ratio(case, t)) + ' (' + fmt(res.ratio(case, t, cpu=True), '.2f') + ')':>16}"
            for t in res.threads()))
    print("\nissue 6 targets" + (" (smoke run: timings mean nothing)"
                                 if smoke else ""))
    for what, got, ok in tg:
        print(f"  {status(ok).strip('*'):7} {what}: {got}")
    m = res.meta
    doc = f"""# Performance

Written by `bench/run`{' --smoke: the timings are meaningless' if smoke else ''}.
Reproduce with `bench/run` (bench/README.md explains every number).

- Date: {m.get('date', '?')}
- Machine: {m.get('nproc', '?')} CPUs, {m.get('cpu', '?')}, Linux {m.get('kernel', '?')}
- Versions: {m.get('openssl', '?')}; SoftHSM {m.get('softhsm', '?')}; p11bridge {m.get('commit', '?')} (provider built {m.get('built', '?')})
- Settings: {m.get('settings', '?')}
- Other load: while the operations were measured, other processes used
  {m.get('others', '?')}% of the machine's CPU time. Ratios compare contenders
  measured side by side and suffer less from it than absolute numbers.
- Checks: {res.verified} results were verified in software (every signature
  kind, the decryptions, the derivations); none failed, or the run would
  have stopped.

The contenders (bench/README.md has the details): **provider** is p11bridge
with the key from a `pkcs11:` URI and a fresh `EVP_DigestSignInit_ex` (or
decrypt/derive context) per operation, as libssl does per handshake;
**limit** calls the token directly (one session per thread, the key as a
session object: {', '.join(f'{k} {v}' for k, v in sorted(res.keyobj.items())) or '-'};
software hash and raw mechanism); **software** is OpenSSL's default provider
with a file key. Ratios are medians of per-round ratios: the contenders ran
in turns, so each pair was measured side by side.

## Against the targets of issue 6

{table(["target", "measured", "status"], [(w, g, status(o)) for w, g, o in tg])}

## Operations

{ops_table(res)}

## Token calls per operation, once warm (provider, from the debug log)

{calls_table(res)}

## Key loading (OSSL_STORE open to usable EVP_PKEY)

Cold is the first load in a fresh process (the module's `C_Initialize`, the
login and the search included); the direct path does the same calls itself.
Warm repeats the load in the same process.

{load_table(res)}

## TLS 1.3 full handshakes (`openssl s_server`, `openssl s_time -new` on 127.0.0.1)

{tls_table(res)}
{tlsprof_section(res)}

## Startup (`openssl list -providers`, wall time per run)

{table(["configuration", "median ms", "min ms"], [(k, f"{v[0]:.2f}", f"{v[1]:.2f}") for k, v in sorted(res.startup.items())])}

## Where the provider's time goes

{profile_section(res)}

## Closing note

{closing_note(res, tg)}
"""
    md_before = Path(md).read_text() if Path(md).exists() else ""
    with open(md, "w") as f:
        f.write(doc + kept_sections(md_before))
    print(f"\nwrote {md}")



KEEP_MARK = "<!-- written by hand: bench/run keeps what follows -->"


def kept_sections(text):
    """What follows KEEP_MARK in the report being replaced: measurements
    made by other tools (bench/audit-overhead), kept across reruns."""
    at = text.find(KEEP_MARK)
    return "" if at < 0 else "\n" + text[at:]

if __name__ == "__main__":
    main(sys.argv[1:])
