"""`python -m fashionlab` = the `fashionlab` command (DDP child processes re-run it this way)."""
from .cli import run

if __name__ == "__main__":
    run()
