"""`python -m ltx_reconcile`: the same entry point as the `ltx-reconcile` script."""

from ltx_reconcile.cli.main import run

if __name__ == "__main__":
    run()
