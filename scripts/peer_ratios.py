"""numba-cpu against each peer, case by case, from grubench results files: the speedup
peer median / numba-cpu median (>= 1.00 means numba-cpu is at least as fast), and the
cases where a peer is faster.

    python scripts/peer_ratios.py reports/cpu/peers/default reports/cpu/peers/targets
"""
import sys

import pandas as pd

from grubench import report
from grubench.tables import case_name

OURS = "numba-cpu"
PEERS = ("onnxruntime", "jax", "torch-cpu")
KEY = ["cell", "variant", "mode", "T", "B", "I", "H", "threads"]


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[frame["status"] == "ok"]
    medians = ok.pivot_table(index=KEY, columns="backend", values="median_s")
    table = pd.DataFrame(index=medians.index)
    for peer in PEERS:
        if peer in medians:
            table[peer] = medians[peer] / medians[OURS]
    return table.reset_index()


def main(paths: list[str]) -> None:
    table = pd.concat([ratios(report.load_results(p)) for p in paths]).drop_duplicates(KEY)
    size = table[["T", "B", "I", "H"]].astype(str).agg(",".join, axis=1)
    table.insert(0, "case", [f"{case_name(cell, variant)} {mode} {size} t{threads}"
                             for cell, variant, mode, size, threads in zip(
                                 table["cell"], table["variant"], table["mode"], size,
                                 table["threads"])])
    columns = ["case", *(p for p in PEERS if p in table)]
    print(f"speedup of {OURS} over each peer (peer median / {OURS} median; < 1 = peer faster)\n")
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for _, row in table.iterrows():
        cells = [row["case"]] + ["-" if pd.isna(row[p]) else
                                 (f"**{row[p]:.2f}**" if row[p] < 1 else f"{row[p]:.2f}")
                                 for p in columns[1:]]
        print("| " + " | ".join(cells) + " |")
    print()
    for peer in columns[1:]:
        measured = table[peer].dropna()
        print(f"- {peer} faster than {OURS} in {(measured < 1).sum()} of {len(measured)} cases; "
              f"speedup of {OURS} from {measured.min():.2f}x to {measured.max():.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
