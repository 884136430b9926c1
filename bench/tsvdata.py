"""bench/run's results file: one TSV row per fact, first column the kind.

bench.py appends to it; report.py reads it. Both import this module and
neither imports the other for it.
"""


def tsv_append(path, *rows):
    with open(path, "a") as f:
        for row in rows:
            f.write("\t".join(str(x) for x in row) + "\n")


def tsv_read(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                rows.append(line.rstrip("\n").split("\t"))
    return rows
