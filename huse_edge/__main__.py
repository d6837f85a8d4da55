"""`python -m huse_edge`: the `huse-edge` command where console scripts are not on PATH (an edge board's system
Python, a venv that was not activated)."""

from huse_edge.cli import main

if __name__ == "__main__":
    main()
