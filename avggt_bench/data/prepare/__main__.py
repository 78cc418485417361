"""`python -m avggt_bench.data.prepare <step> ...`."""

from avggt_bench.data.prepare.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
