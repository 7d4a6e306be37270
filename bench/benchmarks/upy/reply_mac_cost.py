# What the pump pays to sign one reply (protocol/SPEC.md section 21.6),
# under MicroPython: the firmware's own Hmac over a STATUS reply (6-byte
# header, 73-byte payload) and the request's counter and MAC. Prints JSON.
import json
import time

from pump.auth import Hmac

REPEAT = 2000
mac = Hmac(bytes(range(32)))
covered = bytes(6 + 73)
tag = bytes(20)
start = time.ticks_us()
for _ in range(REPEAT):
    mac.digest(covered, tag)
elapsed = time.ticks_diff(time.ticks_us(), start)
print(json.dumps({"us_per_mac": elapsed / REPEAT}))
