"""``python -m overlord``: the same as the ``overlord`` command."""

from overlord.cli import main

if __name__ == "__main__":
    main()
