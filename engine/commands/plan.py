"""`idwell-sync plan` (not built yet)."""
HELP = "plan (not built yet)"


def add_arguments(parser):
    pass


def main(args) -> int:
    raise SystemExit("idwell-sync plan: not built yet")
