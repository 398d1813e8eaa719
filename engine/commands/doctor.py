"""`idwell-sync doctor` (not built yet)."""
HELP = "doctor (not built yet)"


def add_arguments(parser):
    pass


def main(args) -> int:
    raise SystemExit("idwell-sync doctor: not built yet")
