"""`idwell-sync discover` (not built yet)."""
HELP = "discover (not built yet)"


def add_arguments(parser):
    pass


def main(args) -> int:
    raise SystemExit("idwell-sync discover: not built yet")
