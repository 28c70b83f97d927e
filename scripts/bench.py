#!/usr/bin/env python3
"""Run the vkconvt benchmark: the same as `python -m vkconvt bench ...` (see --help)."""
import argparse
import sys

from vkconvt.bench import cli as bench


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/bench.py")
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
