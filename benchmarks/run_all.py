"""Every benchmark in one run, as ``minillm bench`` (this script only forwards to it).

    python benchmarks/run_all.py [--threads 1] [--out runs/bench] [--device cuda] ...

Writes results.json, report.md (the tables of benchmarks/README.md) and
attention_cost.png to ``--out``; on a machine with CUDA it adds the GPU table.
"""
import sys

from minillm.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
