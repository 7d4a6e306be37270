# Event-log codes (GET_LOG), as named in protocol/schema.py LOG_CODES; the
# comment says what the two arguments a and b carry.

BOOT = 1  # a = reset cause, b = 1 if the reset was unexpected
PROGRAM_PENDING = 2  # a = crc, b = soft-limit override mask
PROGRAM_ACTIVE = 3  # a = crc, b = soft-limit override mask
PROGRAM_ABANDONED = 4  # a = crc dropped; b = 0 timed out, 1 cancelled, 2 replaced
START = 5
STOP = 6
BOLUS_START = 7  # a = bolus id | kind << 16, b = target nL
BOLUS_DONE = 8  # a = bolus id, b = delivered nL
BOLUS_CANCELLED = 9  # a = bolus id, b = delivered nL
PB_REFUSED = 10  # access log: a = NACK code | detail << 8, b = patient-bolus refusals ever
REFILL = 11  # a = added nL, b = discrepancy nL (signed)
ALARM_RAISED = 12  # a = alarm id, b = priority
ALARM_CLEARED = 13  # a = alarm id
GOVERNOR_STOP = 14  # a = window (1 hourly, 2 daily), b = window total ng (dose at the tip)
STROKE_MISMATCH = 15  # a = steps moved, b = steps commanded
BOLUS_INTERRUPTED = 16  # a = bolus id, b = delivered nL before the reset
SOFT_OVERRIDE = 17  # a = mask of soft limits overridden
CLOCK_SET = 18  # a = new local offset s
ALARM_ACKNOWLEDGED = 19  # a = alarm id
STALL_RETRY = 20  # a = attempt, b = steps moved
SELF_TEST_FAILED = 21  # a = what (1 program, 2 journal, 3 key store), b = detail
OCCLUSION_STROKE = 22  # a = residual pressure 0.1 mmHg, b = stroke response
SESSION_OPENED = 23  # a = role
SESSION_CLOSED = 24  # a = role, b = 0 closed, 1 idle, 2 too old, 3 replaced
AUTH_REFUSED = 25  # access log: a = NACK code | msg id << 8, b = session-rule refusals ever
REFILL_DRUG = 26  # after REFILL: a = drug id, b = concentration ug/mL
TIP_DRUG = 27  # the drug path: a = drug id, b = concentration now at the tip
CATHETER = 28  # a = path nL (pump + catheter), b = 1 new (empty) catheter
LINE_LEARNED = 42  # a = nominal rise, b = its sd (0.1 mmHg)
KEYS_PROVISIONED = 46  # a = roles given keys (bit 1 patient, bit 2 clinician)

# Codes that go to the access log (GET_ACCESS_LOG), not the therapy history
# (protocol/schema.py ACCESS_LOG_CODES). A PB_REFUSED or AUTH_REFUSED entry
# with a = 0 starts an access file: it carries the tally (b) over.
ACCESS = (SESSION_OPENED, SESSION_CLOSED, PB_REFUSED, AUTH_REFUSED)
