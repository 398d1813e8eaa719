"""`idwell-sync validate` (not built yet)."""
HELP = "validate (not built yet)"


def add_arguments(parser):
    pass


def main(args) -> int:
    raise SystemExit("idwell-sync validate: not built yet")
