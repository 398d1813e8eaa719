"""`idwell-sync run` (not built yet)."""
HELP = "run (not built yet)"


def add_arguments(parser):
    pass


def main(args) -> int:
    raise SystemExit("idwell-sync run: not built yet")
