"""Writes the RP2040 B1 bootrom from rp2040js's demo/bootrom.ts, checked by its sha256.

Usage: ``python3 pico/bootrom_from_ts.py bootrom.ts rp2040-bootrom-b1.bin`` (CI:
.github/workflows/ci.yml). The sha256 is that of the B1 bootrom built from
raspberrypi/pico-bootrom revision 00a4a191.
"""

import hashlib
import re
import struct
import sys

SHA256 = "90b31e108faedfa6bbcfcc33ba05dac61e645108cfbbdc385f8dafc71fde44ae"


def main(source: str, target: str) -> int:
    text = open(source, encoding="utf-8").read()
    body = text.split("Uint32Array([", 1)[1].split("])", 1)[0]
    words = [int(word, 16) for word in re.findall(r"0x[0-9a-fA-F]+", body)]
    data = struct.pack(f"<{len(words)}I", *words)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"{source}: sha256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    with open(target, "wb") as out:
        out.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
