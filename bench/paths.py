"""Where things are in the working tree."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
# The compiled firmware image the virtual board runs (as a board would).
IMAGE_DIR = ROOT / "build" / "image"
