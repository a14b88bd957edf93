"""The parser fuzzing of tests/test_parsers_fuzz.py, longer and with fresh randomness.

.venv/bin/python benchmarks/fuzz_parsers.py --examples 20000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=5000, help="examples per property")
    args = parser.parse_args()
    env = {**os.environ, "HOTLINE_FUZZ_EXAMPLES": str(args.examples)}
    started = time.monotonic()
    rc = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_parsers_fuzz.py"],
        cwd=ROOT,
        env=env,
    )
    print(
        f"{args.examples} examples per property in {time.monotonic() - started:.0f} s: {'ok' if rc == 0 else 'FAILED'}"
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
