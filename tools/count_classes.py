#!/usr/bin/env python3
"""Counts NAS-Bench-201's classes of archs under the three keys of engine/space/iso.rs,
written independently of it from ../shared/spec/nb201.md, over the oracle arch table:

    python3 tools/count_classes.py [../shared/data/nb201/archs.csv]

- the isomorphism key (the table's `unique` column; checked against it arch by arch): 6,466;
- the codes key (that key, then the sorted input expressions of every conv edge): 7,425;
- the structure key (that key, then the sorted `(input)@op` of every conv edge): 8,252;
- the modules key (that key, then the sorted `(input)@op` of every conv edge and of every
  pool or skip edge whose input is not exactly `#`): 11,185.
tests/space.rs asserts the last three counts; this is where they come from.
"""
import csv
import sys

CONVS = {"nor_conv_1x1", "nor_conv_3x3"}


def parse(arch):
    """[(from, to, op)] of an arch string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`."""
    edges = []
    for to, node in enumerate(arch.split("+"), start=1):
        for item in node.strip("|").split("|"):
            op, source = item.split("~")
            edges.append((int(source), to, op))
    return edges


def nodes_of(edges):
    """Each node's symbolic expression: `0` the input, `#` zero, `(x)@op`, terms sorted
    and joined with `+`; a `none` edge or an input that is exactly `#` gives `#`."""
    nodes = ["0", None, None, None]
    for to in (1, 2, 3):
        terms = []
        for source, target, op in edges:
            if target != to:
                continue
            x = nodes[source]
            if op == "none" or x == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(x)
            else:
                terms.append(f"({x})@{op}")
        nodes[to] = "+".join(sorted(terms))
    return nodes


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/nb201/archs.csv"
    keys = {"iso": set(), "codes": set(), "structure": set(), "modules": set()}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        edges = parse(row["arch"])
        nodes = nodes_of(edges)
        if nodes[3] != row["unique"]:
            sys.exit(f"index {row['index']}: key {nodes[3]!r} != the table's {row['unique']!r}")
        convs = [(nodes[s], op) for s, _, op in edges if op in CONVS]
        keys["iso"].add(nodes[3])
        keys["codes"].add((nodes[3], tuple(sorted(f"({x})" for x, _ in convs))))
        keys["structure"].add((nodes[3], tuple(sorted(f"({x})@{op}" for x, op in convs))))
        ops = [(nodes[s], op) for s, _, op in edges
               if op in CONVS or (op != "none" and nodes[s] != "#")]
        keys["modules"].add((nodes[3], tuple(sorted(f"({x})@{op}" for x, op in ops))))
    print(f"{len(rows)} archs; classes: isomorphism {len(keys['iso'])}, "
          f"codes {len(keys['codes'])}, structure {len(keys['structure'])}, "
          f"modules {len(keys['modules'])}")


if __name__ == "__main__":
    main()
