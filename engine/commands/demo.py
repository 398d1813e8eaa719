"""`idwell-sync demo` (not built yet)."""
HELP = "demo (not built yet)"


def add_arguments(parser):
    pass


def main(args) -> int:
    raise SystemExit("idwell-sync demo: not built yet")
