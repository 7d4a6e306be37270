# Event-log codes (GET_LOG): generated from protocol/schema.py LOG_CODES by
# `make vectors` (protocol/generate.py); do not edit. The schema says what the
# two arguments a and b of each code carry.

BOOT = 1
PROGRAM_PENDING = 2
PROGRAM_ACTIVE = 3
PROGRAM_ABANDONED = 4
START = 5
STOP = 6
BOLUS_START = 7
BOLUS_DONE = 8
BOLUS_CANCELLED = 9
PB_REFUSED = 10
REFILL = 11
ALARM_RAISED = 12
ALARM_CLEARED = 13
GOVERNOR_STOP = 14
STROKE_MISMATCH = 15
BOLUS_INTERRUPTED = 16
SOFT_OVERRIDE = 17
CLOCK_SET = 18
ALARM_ACKNOWLEDGED = 19
STALL_RETRY = 20
SELF_TEST_FAILED = 21
OCCLUSION_STROKE = 22
SESSION_OPENED = 23
SESSION_CLOSED = 24
AUTH_REFUSED = 25
REFILL_DRUG = 26
TIP_DRUG = 27
CATHETER = 28
LINE_LEARNED = 42
KEYS_PROVISIONED = 46

# Codes that go to the access log (GET_ACCESS_LOG), not the therapy history
# (schema ACCESS_LOG_CODES). A PB_REFUSED or AUTH_REFUSED entry with a = 0
# starts an access file: it carries the tally (b) over.
ACCESS = (SESSION_OPENED, SESSION_CLOSED, PB_REFUSED, AUTH_REFUSED)
