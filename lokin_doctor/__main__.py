import sys

from lokin_doctor.cli import main

if __name__ == "__main__":
    sys.exit(main())
