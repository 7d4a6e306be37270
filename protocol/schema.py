# The one source of truth for the pump and rig serial protocol.
#
# This module runs on both ends: the firmware (MicroPython, encodes with
# `struct`) and the bench (CPython, builds `construct` structures from it).
# Keep it in the MicroPython subset: plain tuples and ints, no typing, no
# dataclasses, nothing that allocates after import.
#
# Every change to a table here changes FINGERPRINT, which both ends exchange
# at HELLO; a firmware and a bench built from different tables refuse each
# other. protocol/SPEC.md describes the same tables in prose and
# protocol/vectors.json holds golden frames checked by both codecs.
#
# The firmware imports protocol/table.py instead: ids, struct formats and
# codes only, generated from this module by `make vectors` (protocol/
# generate.py), because these tables with their names and units cost tens of
# KB of heap on a board. A test fails when table.py is stale.

import binascii

PROTOCOL_VERSION = 1

# --- framing ---------------------------------------------------------------
# body = header | payload | crc32 (little-endian), sent COBS-encoded between
# two 0x00 delimiters.
HEADER_FORMAT = "<BBHBB"  # version, msg_id, seq, flags, payload length
HEADER_SIZE = 6
CRC_SIZE = 4
MAX_PAYLOAD = 240
MAX_BODY = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 250
# COBS adds one byte per started 254-byte block; the delimiters add two.
MAX_ENCODED = MAX_BODY + 1 + MAX_BODY // 254  # 251
MAX_WIRE = MAX_ENCODED + 2  # 253

FLAG_REPLY = 0x01  # an answer to a request, echoing its seq
FLAG_ERROR = 0x02  # with FLAG_REPLY: a NACK, payload is NACK_FIELDS
FLAG_EVENT = 0x04  # unsolicited, seq from the sender's own event counter
# An authenticated request (pump port): the payload ends with AUTH_TRAILER,
# the client's request id, a session counter and a MAC over the frame (SPEC
# section 21).
FLAG_AUTH = 0x08

# --- authenticated sessions (protocol/SPEC.md section 21) ---------------------
# Roles, lowest first: a session of a role may send what its role and every
# lower role may send. READ_ONLY needs no session.
ROLES = (
    (0, "READ_ONLY"),  # status, log, program readback: no key
    (1, "PATIENT"),  # patient bolus
    (2, "CLINICIAN"),  # program, bolus, refill, start/stop, alarms, clock
)
ROLE_READ_ONLY = 0
ROLE_PATIENT = 1
ROLE_CLINICIAN = 2
KEY_SIZE = 32  # HMAC-SHA256 key per role, provisioned at flash time
NONCE_SIZE = 16
PROOF_SIZE = 32  # a full HMAC-SHA256 in the session handshake
MAC_SIZE = 16  # per-frame MAC: HMAC-SHA256 truncated to 128 bits (RFC 4868)
# request id (8 bytes chosen by the client, unique per key; all zeros: none),
# counter (strictly increasing per session), MAC over header | payload |
# request id | counter. A therapy-changing request (ONCE_ROLE) runs at most
# once per request id, whatever the session or seq (SPEC section 23).
REQUEST_ID_SIZE = 8
AUTH_TRAILER_FORMAT = "<8sI16s"
AUTH_TRAILER_SIZE = REQUEST_ID_SIZE + 4 + MAC_SIZE
# A reply to a request whose MAC the pump checked ends with a MAC too (SPEC
# section 21.6): HMAC-SHA256(session key, header | payload | the request's
# counter and MAC) truncated to 96 bits, so that the longest reply (GET_LOG)
# still fits MAX_PAYLOAD. Such a reply carries FLAG_AUTH.
REPLY_MAC_SIZE = 12
# Outcomes the pump keeps per role (the newest ones; SPEC section 23).
OUTCOMES_KEPT = 16
OUTCOME_REPLY_SIZE = 20  # the longest reply payload an outcome holds
SESSION_IDLE_S = 600  # a session unused this long (device time) expires
SESSION_MAX_S = 8 * 3600  # and none lasts longer than this
CHALLENGE_S = 60  # a challenge not answered within this is void
# The board's key store, written at flash time into the board's state
# directory (beside the journal): KEYSTORE_MAGIC | patient key | clinician
# key | CRC-32 (LE) of what precedes. An all-zero key: that role has none.
KEYSTORE_FILE = "keys.bin"
KEYSTORE_MAGIC = b"PKY1"
KEYSTORE_SIZE = 4 + 2 * KEY_SIZE + 4
# Domain-separation labels of the three HMACs made from a role key.
LABEL_OPEN = b"pump-auth-open"  # the client's proof of the key
LABEL_PUMP = b"pump-auth-pump"  # the pump's proof of the key
LABEL_SESSION = b"pump-auth-session"  # the session key

# --- ports -----------------------------------------------------------------
PORT_PUMP = "pump"  # the pump's own link (USB CDC on a board)
PORT_RIG = "rig"  # the plant / fixture: time, faults, ground truth
PORT_BOTH = "both"  # accepted on either port

# --- error codes carried by a NACK -----------------------------------------
# (code, name), meaning in the comment. Codes 1-15 are link errors: the frame did not arrive
# intact and the sender may retransmit it unchanged. Codes from 16 are
# refusals of a well-formed request: retrying the same request is pointless.
ERRORS = (
    (1, "BAD_CRC"),  # CRC-32 of the frame does not match; retransmit
    (2, "BAD_FRAME"),  # COBS decoding failed or the header is truncated; retransmit
    (3, "OVERSIZE"),  # more than MAX_ENCODED bytes between delimiters; retransmit
    (4, "BAD_LENGTH"),  # header length disagrees with the bytes received; retransmit
    (16, "BAD_VERSION"),  # protocol version in the header is not PROTOCOL_VERSION
    (17, "UNKNOWN_MESSAGE"),  # no message with this id (detail = the id)
    (18, "WRONG_PORT"),  # the message exists but not on this port (detail = the id)
    (19, "BAD_PAYLOAD"),  # payload size is wrong for the message (detail = expected size)
    (20, "NOT_A_REQUEST"),  # a frame with the REPLY or EVENT flag was sent to the device
    (21, "BAD_VALUE"),  # a field is out of its allowed range (detail = field index)
    (22, "BUSY"),  # an earlier request of this kind is still in progress
    (23, "SCHEMA_MISMATCH"),  # HELLO carried another protocol version or schema fingerprint
    (24, "HARD_LIMIT"),  # a drug-library hard limit refuses it (detail = limit id)
    (25, "SOFT_LIMIT"),  # a soft limit needs the override flag (detail = limit id)
    (26, "BAD_PROGRAM"),  # the program is malformed (detail = field index)
    (27, "NO_PENDING"),  # CONFIRM without a pending program
    (28, "CRC_MISMATCH"),  # CONFIRM carried another CRC than the pending program's
    (29, "LOCKOUT"),  # patient bolus inside its lockout (detail = seconds left)
    (30, "DAILY_MAX"),  # patient bolus daily maximum reached (detail = the maximum)
    (31, "NOT_DELIVERING"),  # delivery is stopped (STOP, no program, or an alarm)
    (32, "BOLUS_ACTIVE"),  # a bolus is already running
    (33, "ALARM_ACTIVE"),  # an alarm that stops delivery is latched (detail = alarm id)
    (34, "RESERVOIR"),  # reservoir volume out of range (detail = reason)
    (35, "POWERED_OFF"),  # the pump is powered off
    (36, "AUTH_REQUIRED"),  # needs an authenticated frame of a session (detail = role needed)
    (37, "WRONG_ROLE"),  # the session's role may not send this (detail = role needed)
    (38, "BAD_MAC"),  # the frame's MAC or the handshake proof is wrong
    (39, "REPLAY"),  # the counter is not above the session's last (detail = low 16 bits of it)
    (40, "SESSION_EXPIRED"),  # the session ended (idle, too old, closed or replaced)
    (41, "NO_CHALLENGE"),  # AUTH_OPEN without a live AUTH_CHALLENGE for this role
    (42, "NO_KEY"),  # no key is provisioned on this pump for the role (detail = role)
    # The drug or concentration differs from the one it must match: a REFILL
    # with a new drug/concentration and no confirmed program for it, a
    # PROGRAM/CONFIRM for another drug than the reservoir holds (detail:
    # 1 refill, 2 program, 3 the pending program named by REFILL differs)
    (43, "DRUG_MISMATCH"),
    (48, "DURATION"),  # a duration above its documented maximum (detail = the maximum, min)
    # Exactly once (SPEC section 23): a reset came while the request with
    # this id ran, before its outcome was journalled: it may have taken
    # effect. Read the state back (STATUS, GET_LOG); never send it again.
    (53, "IN_DOUBT"),
    (54, "ID_REUSED"),  # the request id was used for another request (detail = its msg id)
    (55, "NO_REQUEST_ID"),  # a therapy-changing request without a request id
    (61, "PROVISIONED"),  # PROVISION on a pump that already has a key store
)
LINK_ERROR_LIMIT = 16  # codes below this are link errors, safe to retransmit

BAD_CRC = 1
BAD_FRAME = 2
OVERSIZE = 3
BAD_LENGTH = 4
BAD_VERSION = 16
UNKNOWN_MESSAGE = 17
WRONG_PORT = 18
BAD_PAYLOAD = 19
NOT_A_REQUEST = 20
BAD_VALUE = 21
BUSY = 22
SCHEMA_MISMATCH = 23
HARD_LIMIT = 24
SOFT_LIMIT = 25
BAD_PROGRAM = 26
NO_PENDING = 27
CRC_MISMATCH = 28
LOCKOUT = 29
DAILY_MAX = 30
NOT_DELIVERING = 31
BOLUS_ACTIVE = 32
ALARM_ACTIVE = 33
RESERVOIR = 34
POWERED_OFF = 35
AUTH_REQUIRED = 36
WRONG_ROLE = 37
BAD_MAC = 38
REPLAY = 39
SESSION_EXPIRED = 40
NO_CHALLENGE = 41
NO_KEY = 42
DRUG_MISMATCH = 43
DURATION = 48
IN_DOUBT = 53
ID_REUSED = 54
NO_REQUEST_ID = 55
PROVISIONED = 61

# Durations on the wire and their maxima (docs/pump.md 12.4). A bolus runs at most a
# day: its strokes are timed on the wrapping millisecond ticks (period 2**30
# ms, intervals unambiguous below 2**29 ms = 6.2 days), and its hourly share
# is checked against the governor's windows. Above: NACK DURATION.
BOLUS_MAX_DURATION_S = 24 * 3600

# The payload of every NACK (flags REPLY|ERROR), whatever the message id.
NACK_FIELDS = (
    ("code", "B", ""),
    ("detail", "H", ""),
)

# --- board states reported by STATUS ---------------------------------------
STATES = (
    (0, "BOOTING"),
    (1, "IDLE"),  # not delivering: stopped, or no program
    (2, "RUNNING"),  # delivering the active program
    (3, "ALARM"),  # delivery stopped by a latched alarm
    (4, "FAULT"),
)

# --- drug-library limits: the detail of a HARD_LIMIT or SOFT_LIMIT NACK ---
# (firmware/pump/limits.py LIMIT_* carry the same ids; a test checks it)
LIMITS = (
    (0, "none"),
    (1, "unknown_drug"),
    (2, "concentration"),
    (3, "rate"),
    (4, "daily_hard"),
    (5, "bolus_hard"),
    (6, "hourly_hard"),
    (7, "daily_soft"),
    (8, "bolus_soft"),
    (9, "patient_bolus"),
)

# --- alarms (the alarm manager's table lives in firmware/pump/alarms.py) ---
# (id, name, priority: 1 low, 2 medium, 3 high; firmware/pump/alarms.py says
# why each has its priority and what it does to delivery)
ALARMS = (
    (1, "LOW_RESERVOIR", 1),
    (2, "EMPTY_RESERVOIR", 3),
    (3, "DOSE_LIMIT", 3),
    (4, "LOST_STEPS", 2),
    (5, "REFILL_DISCREPANCY", 1),
    (6, "MEMORY", 3),
    (7, "UNEXPECTED_RESET", 1),
    (8, "OCCLUSION", 3),
    (9, "PARTIAL_OCCLUSION", 2),
    (10, "LEAK", 3),
    (11, "MOTOR_STALL", 3),
    (12, "RUNAWAY", 3),
    (13, "ENCODER_FAILURE", 3),
    (14, "SENSOR_FAULT", 2),
    (15, "BATTERY_ERI", 1),
    (16, "BATTERY_EOS", 3),
    (17, "WATCHDOG_RESET", 2),
    (20, "CLOCK_FAULT", 3),  # the ms timer and the RTC disagree (docs/pump.md 14.8)
    (24, "SENSING_LIMITED", 1),  # the line is too compliant/noisy for some sensing
    (25, "TIP_MIGRATION", 2),  # the catheter tip no longer sees CSF
    (26, "SLOW_LEAK", 2),  # a leak below the per-stroke limit, over hours
)

# --- alarm priorities (IEC 60601-1-8) and what an ALARM event reports ---
PRIORITIES = (
    (1, "LOW"),
    (2, "MEDIUM"),
    (3, "HIGH"),
)
ALARM_ACTIONS = (
    (0, "CLEARED"),
    (1, "RAISED"),
    (2, "ACKNOWLEDGED"),
    (3, "RESOUNDED"),  # the silence after an acknowledgement ran out
)

# --- faults the rig injects into the plant (INJECT_FAULT / CLEAR_FAULT) ---
FAULTS = (
    (1, "RUNAWAY"),  # param: extra steps per commanded step
    (2, "OCCLUSION"),  # param: catheter resistance x param (0: full occlusion)
    (3, "LEAK"),  # param: % of the flow lost before the tip (100: disconnection)
    (4, "STALL"),  # the rotor does not turn
    (5, "LOST_STEPS"),  # param: % of commanded steps lost
    (6, "ENCODER_FAILURE"),  # the encoder count stops changing
    (7, "SENSOR_STUCK"),  # the pressure reading freezes
    (8, "SENSOR_OFFSET"),  # param: offset added to the reading, 0.1 mmHg
    (9, "BATTERY"),  # param: battery voltage, mV
    (10, "RESERVOIR_EMPTY"),  # the reservoir holds nothing; the motor still turns
    (11, "CORRUPT_JOURNAL"),  # param: byte offset flipped in the newest state slot
    (12, "CSF_PRESSURE"),  # param: CSF pressure, 0.1 mmHg (posture, coughing)
    # A HAL fault, not the plant's: the firmware's millisecond timer runs
    # param / 1000 times fast (1100: x1.1; its RTC does not), so the
    # scheduler asks for too many strokes (and times them short: the line
    # monitors see weak strokes). Starts at once (onset_ms ignored).
    (13, "TIMER_FAST"),
    # param: the pressure (0.1 mmHg, 0..300) where the catheter tip now
    # lies, out of the intrathecal space: the line sees neither the CSF
    # level nor its pulsations, coughs and posture behind the catheter
    (14, "TIP_MIGRATION"),
    # param: the sensor's noise sd, 0.1 mmHg (0..1000), in place of the
    # PLANT's noise_x10 while it lasts (a failing sensor or its wiring)
    (15, "SENSOR_NOISE"),
)

# --- event-log codes (GET_LOG), a and b are the event's arguments ---------
LOG_CODES = (
    (1, "BOOT"),  # a = reset cause, b = 1 if unexpected
    (2, "PROGRAM_PENDING"),  # a = crc, b = soft-limit override mask
    (3, "PROGRAM_ACTIVE"),  # a = crc, b = soft-limit override mask
    (4, "PROGRAM_ABANDONED"),  # a = crc dropped; b = 0 timed out, 1 cancelled, 2 replaced
    (5, "START"),
    (6, "STOP"),
    (7, "BOLUS_START"),  # a = bolus id | kind << 16, b = target nL
    (8, "BOLUS_DONE"),  # a = bolus id, b = delivered nL
    (9, "BOLUS_CANCELLED"),  # a = bolus id, b = delivered nL
    # access log: a = NACK code | detail << 8, b = patient-bolus refusals ever
    (10, "PB_REFUSED"),
    (11, "REFILL"),  # a = added nL, b = discrepancy nL (signed)
    (12, "ALARM_RAISED"),  # a = alarm id, b = priority
    (13, "ALARM_CLEARED"),  # a = alarm id
    (14, "GOVERNOR_STOP"),  # a = window (1 hourly, 2 daily), b = window total ng
    (15, "STROKE_MISMATCH"),  # a = steps moved, b = steps commanded
    (16, "BOLUS_INTERRUPTED"),  # a = bolus id, b = delivered nL before the reset
    (17, "SOFT_OVERRIDE"),  # a = mask of soft limits overridden
    (18, "CLOCK_SET"),  # a = new local offset s
    (19, "ALARM_ACKNOWLEDGED"),  # a = alarm id
    (20, "STALL_RETRY"),  # a = attempt, b = steps moved
    (21, "SELF_TEST_FAILED"),  # a = what (1 program, 2 journal, 3 key store), b = detail
    (22, "OCCLUSION_STROKE"),  # a = residual pressure 0.1 mmHg, b = stroke response
    (23, "SESSION_OPENED"),  # a = role
    (24, "SESSION_CLOSED"),  # a = role, b = 0 closed, 1 idle, 2 too old, 3 replaced
    # access log: refused by the session rules (SPEC 21.4, 23): a = NACK
    # code | msg id << 8, b = session-rule refusals ever
    (25, "AUTH_REFUSED"),
    (26, "REFILL_DRUG"),  # after REFILL: a = drug id, b = concentration ug/mL
    (27, "TIP_DRUG"),  # the drug path: a = drug id, b = concentration now at the tip
    (28, "CATHETER"),  # a = path nL (pump + catheter), b = 1 new (empty) catheter
    # What SENSING_LIMITED is about, logged when it changes: a = mask (1 held
    # strokes, 2 weak strokes, 4 30 % leaks, 8 the CSF pulsation), b = the
    # measured noise of a reading pair (sqrt(2) sigma), 0.1 mmHg
    (29, "LINE_LIMITS"),
    # The line's stroke response as measured (pump/monitors/response.py),
    # 0.1 mmHg: a = nominal rise, b = its standard deviation
    (42, "LINE_LEARNED"),
    (46, "KEYS_PROVISIONED"),  # a = roles given keys (bit 1 patient, bit 2 clinician)
)
# These go to the access log (GET_ACCESS_LOG), a ring of its own, never to
# the therapy history (GET_LOG): no peer can push therapy out of the log.
# A PB_REFUSED or AUTH_REFUSED entry with a = 0 starts an access-log file and
# carries its tally over (docs/pump.md section 15).
ACCESS_LOG_CODES = ("SESSION_OPENED", "SESSION_CLOSED", "PB_REFUSED", "AUTH_REFUSED")

# --- reset causes reported by the BOOT event -------------------------------
RESET_CAUSES = (
    (0, "POWER_ON"),
    (1, "RIG_RESET"),
    (2, "WATCHDOG"),
    (3, "SOFT"),
)

# --- therapy and rig vocabulary (the firmware takes them from protocol/table.py
# as MODE_*, BOLUS_*, DRUG_*, REFILL_*, POWER_*; the bench from here) ---------
# The PROGRAM mode field and STATUS mode.
MODES = (
    (0, "STOPPED"),
    (1, "CONTINUOUS"),
    (2, "FLEX"),
    (3, "MINIMUM_RATE"),
)
# BOLUS kind (1-3 may be requested) and STATUS bolus_kind (also 0 and 4).
BOLUS_KINDS = (
    (0, "NONE"),
    (1, "CLINICIAN"),
    (2, "PRIMING"),
    (3, "BRIDGE"),
    (4, "PATIENT"),
)
# The drug library's ids (PROGRAM drug_id, REFILL drug_id); its limits live in
# firmware/pump/limits.py. "none" is saline: concentration 0.
DRUGS = (
    (0, "none"),
    (1, "morphine"),
    (2, "hydromorphone"),
    (3, "ziconotide"),
    (4, "baclofen"),
    (5, "bupivacaine"),
    (6, "clonidine"),
    (7, "sufentanil"),
)
# The detail of a RESERVOIR NACK to REFILL (0: the refill was taken).
REFILL_RESULTS = (
    (0, "OK"),
    (1, "OVER_CAPACITY"),  # added volume above the reservoir's capacity
    (2, "BAD_VOLUME"),  # a negative volume, or withdrawn above capacity
)
# The rig's POWER action.
POWER_ACTIONS = (
    (0, "OFF"),
    (1, "ON"),
    (2, "CUT_AFTER_BYTES"),
    (3, "CUT_IN_MS"),
)
# Every table of names above, with the prefix its names take in
# protocol/table.py (a test checks that no name is defined twice). The alarm
# ids go there too (ALARM_*); the log codes are generated into
# firmware/pump/logcodes.py under their own names.
VOCABULARIES = (
    ("STATE_", STATES),
    ("RESET_CAUSE_", RESET_CAUSES),
    ("MODE_", MODES),
    ("BOLUS_", BOLUS_KINDS),
    ("DRUG_", DRUGS),
    ("REFILL_", REFILL_RESULTS),
    ("POWER_", POWER_ACTIONS),
)

# --- messages ----------------------------------------------------------------
# (id, name, port, request fields, reply fields)
# A field is (name, struct format, unit). Formats are little-endian, one field
# per format code; "Ns" is a fixed-size ASCII string padded with 0x00.
# Events use the same table: port is where they are sent from, the request
# fields are the event payload and the reply fields are None.
# The therapy program (PROGRAM request, GET_PROGRAM reply); firmware/pump/
# program.py gives it meaning. Arrays ("24H") are one struct code repeated.
# A flex step with this bit in its flex_days runs on past midnight into the
# next day until that day's first step starts (22:00-02:00 is one step and
# the step at 02:00 that ends it), instead of midnight returning to the
# background rate (docs/pump.md 11.3).
FLEX_OVERNIGHT = 0x80
# fmt: off
PROGRAM_FIELDS = (
    ("drug_id", "B", ""),
    ("conc_ug_ml", "I", "ug/mL"),
    ("mode", "B", ""),  # 0 stopped, 1 continuous, 2 flex, 3 minimum rate
    ("basal_nl_day", "I", "nL/day"),  # continuous rate; flex background rate
    ("flex_count", "B", ""),
    ("flex_start_min", "24H", "min"),  # minute of the local day, ascending
    ("flex_rate_nl_day", "24I", "nL/day"),
    # bit 0 Monday .. bit 6 Sunday (none: every day); bit 7 FLEX_OVERNIGHT
    ("flex_days", "24B", ""),
    ("pb_dose_nl", "I", "nL"),  # 0: no patient bolus
    ("pb_lockout_s", "I", "s"),
    ("pb_max_per_day", "B", "count"),
    ("low_reservoir_nl", "I", "nL"),
    ("override_soft", "B", ""),  # 1: the clinician accepts soft-limit excess
)

MESSAGES = (
    (0x01, "HELLO", PORT_PUMP, (
        ("protocol_version", "B", ""),
        ("schema_fingerprint", "I", ""),
    ), (
        ("protocol_version", "B", ""),
        ("firmware_version", "16s", ""),
        ("board", "16s", ""),
        ("device_id", "16s", ""),
        ("schema_fingerprint", "I", ""),
        # the interpreter the firmware runs on, "1.28.0" (sys.implementation)
        ("micropython_version", "16s", ""),
    )),
    (0x02, "PING", PORT_BOTH, (
        ("token", "I", ""),
    ), (
        ("token", "I", ""),
    )),
    (0x03, "STATUS", PORT_PUMP, (), (
        ("device_time_ms", "Q", "ms"),
        ("uptime_ms", "Q", "ms"),
        ("state", "B", ""),
        ("boot_count", "H", "count"),
        ("mode", "B", ""),
        ("rate_nl_day", "I", "nL/day"),
        ("reservoir_nl", "I", "nL"),
        ("delivered_nl", "I", "nL"),
        ("bolus_kind", "B", ""),
        ("bolus_remaining_nl", "I", "nL"),
        ("alarms", "I", ""),  # bit (id - 1) set while alarm id is active
        ("program_crc", "I", ""),
        ("pending", "B", ""),
        ("time_to_empty_s", "i", "s"),  # -1: never at the current rate
        ("refill_date_s", "I", "s"),
        ("pb_last_day", "B", "count"),
        ("window_1h_ng", "I", "ng"),  # the dose governor's windows: dose at the tip
        ("window_24h_ng", "I", "ng"),
        ("acknowledged", "I", ""),  # alarms whose sound is silenced by ACK_ALARM
        ("pressure_x10", "h", "0.1 mmHg"),  # last sensor reading
        ("battery_mv", "H", "mV"),
        ("eos_days", "H", "d"),  # days left to end of service after ERI; 0xFFFF: no ERI
        ("tip_drug_id", "B", ""),  # the drug now leaving the catheter tip (drug path model)
        ("tip_conc_ug_ml", "I", "ug/mL"),  # its concentration (0: saline or an empty catheter)
        ("new_drug_at_tip_s", "I", "s"),  # until the reservoir drug is at the tip; 0xFFFFFFFF never
    )),
    (0x04, "LINK_STATS", PORT_BOTH, (), (
        ("frames_ok", "I", "count"),
        ("garbage", "I", "count"),
        ("bad_crc", "I", "count"),
        ("bad_frame", "I", "count"),
        ("oversize", "I", "count"),
        ("rejected", "I", "count"),
        ("duplicates", "I", "count"),
        ("tx_dropped", "I", "count"),
    )),
    (0x05, "PROGRAM", PORT_PUMP, PROGRAM_FIELDS, (
        ("crc", "I", ""),
        ("soft_override_mask", "H", ""),
        ("max_daily_nl", "I", "nL"),
        ("max_hourly_nl", "I", "nL"),
    )),
    (0x06, "GET_PROGRAM", PORT_PUMP, (
        ("which", "B", ""),  # 0 active, 1 pending
    ), (("crc", "I", ""),) + PROGRAM_FIELDS),
    (0x07, "CONFIRM", PORT_PUMP, (
        ("crc", "I", ""),
    ), (
        ("crc", "I", ""),
    )),
    (0x08, "CANCEL_PROGRAM", PORT_PUMP, (), ()),
    (0x09, "START", PORT_PUMP, (), (
        ("state", "B", ""),
    )),
    (0x0A, "STOP", PORT_PUMP, (), (
        ("state", "B", ""),
    )),
    (0x0B, "BOLUS", PORT_PUMP, (
        ("kind", "B", ""),  # 1 clinician, 2 priming, 3 bridge
        ("volume_nl", "I", "nL"),  # clinician: volume, or 0 to use dose_ng
        ("dose_ng", "I", "ng"),
        ("duration_s", "I", "s"),
        ("catheter_mm", "H", "mm"),  # priming, bridge
        ("nl_per_cm", "H", "nL/cm"),  # priming, bridge
        ("override_soft", "B", ""),
    ), (
        ("bolus_id", "H", ""),
        ("volume_nl", "I", "nL"),
    )),
    (0x0C, "PATIENT_BOLUS", PORT_PUMP, (), (
        ("bolus_id", "H", ""),
        ("volume_nl", "I", "nL"),
    )),
    (0x0D, "CANCEL_BOLUS", PORT_PUMP, (), (
        ("delivered_nl", "I", "nL"),
    )),
    (0x0E, "REFILL", PORT_PUMP, (
        ("withdrawn_nl", "I", "nL"),
        ("added_nl", "I", "nL"),
        ("drug_id", "B", ""),  # the drug put in (drug library id)
        ("conc_ug_ml", "I", "ug/mL"),  # its concentration
        # 0, or the CRC of the pending program for the new drug/concentration:
        # refill and program are then committed together (docs/pump.md 22)
        ("program_crc", "I", ""),
    ), (
        ("expected_nl", "I", "nL"),
        ("discrepancy_nl", "i", "nL"),
        ("flagged", "B", ""),
        ("refill_date_s", "I", "s"),
    )),
    (0x0F, "GET_LOG", PORT_PUMP, (
        ("start", "I", ""),
        ("count", "B", ""),
    ), (
        ("first", "I", ""),
        ("count", "B", ""),
        ("total", "I", ""),
        ("index", "12I", ""),  # each entry's own index (a torn record is skipped)
        ("time_s", "12I", "s"),
        ("code", "12H", ""),
        ("a", "12I", ""),  # crcs, ids, volumes: unsigned
        ("b", "12i", ""),  # discrepancies: signed
    )),
    (0x10, "CLEAR_ALARM", PORT_PUMP, (
        ("alarm", "B", ""),
    ), (
        ("alarms", "I", ""),
    )),
    (0x12, "ACK_ALARM", PORT_PUMP, (
        ("alarm", "B", ""),  # 0: every active alarm
    ), (
        ("alarms", "I", ""),
        ("acknowledged", "I", ""),
        ("silence_s", "H", "s"),  # until it sounds again if still active
    )),
    (0x11, "SET_CLOCK", PORT_PUMP, (
        ("local_offset_s", "I", "s"),  # local time = device seconds + offset
    ), ()),
    # Sessions (SPEC section 21). A "16s"/"32s" field with unit "bytes" is
    # binary, not text.
    (0x13, "AUTH_CHALLENGE", PORT_PUMP, (
        ("role", "B", ""),
    ), (
        ("role", "B", ""),
        ("pump_nonce", "16s", "bytes"),
    )),
    (0x14, "AUTH_OPEN", PORT_PUMP, (
        ("role", "B", ""),
        ("client_nonce", "16s", "bytes"),
        ("proof", "32s", "bytes"),  # HMAC(key, LABEL_OPEN | role | pump_nonce | client_nonce)
    ), (
        ("proof", "32s", "bytes"),  # HMAC(key, LABEL_PUMP | role | pump_nonce | client_nonce)
        ("idle_s", "H", "s"),
        ("max_s", "I", "s"),
    )),
    (0x15, "AUTH_CLOSE", PORT_PUMP, (), ()),
    # The access log (docs/pump.md section 15): as GET_LOG, from its own ring.
    (0x21, "GET_ACCESS_LOG", PORT_PUMP, (
        ("start", "I", ""),
        ("count", "B", ""),
    ), (
        ("first", "I", ""),
        ("count", "B", ""),
        ("total", "I", ""),
        ("index", "12I", ""),
        ("time_s", "12I", "s"),
        ("code", "12H", ""),
        ("a", "12I", ""),
        ("b", "12i", ""),
    )),
    # The outcome of a therapy-changing request by its request id (SPEC
    # section 23); read-only. state 0: never seen (it did not run), 1: in
    # doubt (a reset came while it ran), 2: done: msg_id, flags and the
    # first size bytes of reply are the reply it was given (an ACK, or a
    # NACK with FLAG_ERROR).
    (0x20, "OUTCOME", PORT_PUMP, (
        ("role", "B", ""),  # the role of the session that sent it
        ("request_id", "8s", "bytes"),
    ), (
        ("state", "B", ""),
        ("msg_id", "B", ""),
        ("flags", "B", ""),
        ("size", "B", "B"),
        ("reply", "20s", "bytes"),
    )),
    # The drug path (docs/pump.md 22): the catheter fitted, for the pump's model of the
    # volume between reservoir and tip. empty 1: a new (empty) catheter.
    (0x16, "CATHETER", PORT_PUMP, (
        ("catheter_mm", "H", "mm"),
        ("nl_per_cm", "H", "nL/cm"),
        ("empty", "B", ""),
    ), (
        ("path_nl", "I", "nL"),  # pump internal volume + catheter
    )),
    # First use only: a pump with no key store (a board just flashed with a
    # frozen UF2 has an empty filesystem) takes one over its own USB link.
    # Refused with PROVISIONED once it has one (SPEC section 21.5).
    (0x26, "PROVISION", PORT_PUMP, (
        ("keystore", "72s", "bytes"),  # KEYSTORE_SIZE bytes: magic, patient, clinician, CRC-32
    ), ()),
    (0x40, "RIG_HELLO", PORT_RIG, (
        ("protocol_version", "B", ""),
        ("schema_fingerprint", "I", ""),
    ), (
        ("protocol_version", "B", ""),
        ("rig_kind", "16s", ""),
        ("schema_fingerprint", "I", ""),
        ("seed", "I", ""),
    )),
    (0x41, "ADVANCE", PORT_RIG, (
        ("duration_ms", "Q", "ms"),
    ), (
        ("device_time_ms", "Q", "ms"),
    )),
    (0x42, "RESET", PORT_RIG, (), ()),
    (0x43, "TRUTH", PORT_RIG, (), (
        ("pumped_nl", "I", "nL"),  # left the reservoir through the head
        ("tip_nl", "I", "nL"),  # left the catheter tip: the patient's dose
        ("reservoir_nl", "I", "nL"),
        ("steps", "I", "count"),  # steps the head really turned
        ("powered", "B", ""),
        ("journal_bytes", "I", "count"),  # bytes the firmware has written
        ("pocket_nl", "I", "nL"),  # lost through a leak or disconnection
        ("released_nl", "I", "nL"),  # stored in the line at the last occlusion relief
        ("tip_ng", "Q", "ng"),  # drug dose that left the catheter tip (drug path FIFO)
    )),
    (0x44, "POWER", PORT_RIG, (
        ("action", "B", ""),  # 0 off, 1 on, 2 cut after arg journal bytes, 3 cut in arg ms
        ("arg", "I", ""),
    ), (
        ("powered", "B", ""),
    )),
    (0x45, "PLANT", PORT_RIG, (
        ("calibration_ppm", "i", "ppm"),
        ("catheter_nl", "I", "nL"),  # volume; its length (at 2.6 uL/cm) sets the resistance
        ("catheter_empty_nl", "I", "nL"),
        ("reservoir_nl", "I", "nL"),
        ("compliance_x10", "H", "0.1 nL/mmHg"),  # pump outlet and line
        ("resistance_pct", "H", "%"),  # of the Poiseuille value for the catheter
        ("noise_x10", "H", "0.1 mmHg"),  # sensor noise, standard deviation
        ("csf_x10", "h", "0.1 mmHg"),  # CSF pressure at the tip
    ), ()),
    (0x46, "INJECT_FAULT", PORT_RIG, (
        ("fault", "B", ""),  # FAULTS
        ("param", "i", ""),
        ("onset_ms", "I", "ms"),  # device time from now until the fault begins
    ), ()),
    (0x47, "CLEAR_FAULT", PORT_RIG, (
        ("fault", "B", ""),  # 0: every fault
    ), ()),
    (0x4A, "TRACE_CONFIG", PORT_RIG, (
        ("period_ms", "I", "ms"),  # 0: stop; otherwise restart the trace at this period
    ), ()),
    (0x4B, "TRACE", PORT_RIG, (
        ("start", "I", ""),
        ("count", "B", ""),
    ), (
        ("first", "I", ""),
        ("count", "B", ""),
        ("total", "I", ""),  # samples taken since TRACE_CONFIG
        ("time_ms", "12I", "ms"),  # device time (low 32 bits)
        ("tip_nl", "12I", "nL"),  # delivered out of the catheter tip so far
        ("pressure_x10", "12h", "0.1 mmHg"),  # true line pressure at the sensor
        ("sensor_x10", "12h", "0.1 mmHg"),  # what the sensor reported
    )),
    (0x4C, "ANNUNCIATION", PORT_RIG, (
        ("start", "I", ""),
        ("count", "B", ""),
    ), (
        ("first", "I", ""),
        ("count", "B", ""),
        ("total", "I", ""),
        ("time_ms", "12I", "ms"),  # device time (low 32 bits)
        ("output", "12B", ""),  # 1 buzzer, 2 LED
        ("pattern", "12B", ""),  # 0 off; else the alarm priority's pattern
    )),
    (0x49, "HEAP", PORT_RIG, (), (
        ("total", "I", "B"),  # the heap the firmware was given
        ("alloc", "I", "B"),  # live now (after a collection)
        ("peak_alloc", "I", "B"),  # highest live heap seen at a sample
        ("samples", "I", "count"),
    )),
    # The line as real catheters make it (docs/plant.md section 1):
    # material 0 keeps PLANT's compliance_x10, 1 silicone, 2 polyurethane,
    # 3 braided (the wall's compliance from its geometry, plus the pump outlet)
    (0x55, "LINE", PORT_RIG, (
        ("material", "B", ""),
        ("modulus_kpa", "I", "kPa"),  # 0: the material's nominal
        ("air_nl", "I", "nL"),  # trapped air, its volume at 1 atm
        ("air_dissolve_s", "I", "s"),  # time constant of the bubble; 0: it stays
        ("inertance", "B", ""),  # 1: the column's inertance (a second-order line)
        ("occlusion_site", "B", ""),  # 0 at the tip, 1 at the pump outlet
        ("ambient_x10", "h", "0.1 mmHg"),  # ambient - 760 mmHg, read by the sealed sensor
        ("daily_life", "B", ""),  # 1: upright 25 mmHg, transients, cough bursts, strains, weather
    ), ()),
    (0x48, "FILL", PORT_RIG, (
        ("reservoir_nl", "I", "nL"),  # empty the real reservoir, then fill it to this
        ("conc_ug_ml", "I", "ug/mL"),  # with drug of this concentration (0: saline)
    ), (
        ("withdrawn_nl", "I", "nL"),  # what was really left
    )),
    (0x80, "BOOT", PORT_PUMP, (
        ("device_time_ms", "Q", "ms"),
        ("reset_cause", "B", ""),
        ("boot_count", "H", "count"),
    ), None),
    (0x81, "ALARM", PORT_PUMP, (
        ("device_time_ms", "Q", "ms"),
        ("alarm", "B", ""),
        ("action", "B", ""),  # ALARM_ACTIONS: 0 cleared, 1 raised, 2 acknowledged, 3 re-sounded
        ("priority", "B", ""),
        ("alarms", "I", ""),  # active after the change
    ), None),
    (0x82, "BOLUS_EVENT", PORT_PUMP, (
        ("device_time_ms", "Q", "ms"),
        ("bolus_id", "H", ""),
        ("kind", "B", ""),
        ("action", "B", ""),  # 1 started, 2 finished, 3 cancelled
        ("volume_nl", "I", "nL"),  # target when started, delivered otherwise
    ), None),
    (0x83, "PROGRAM_CHANGED", PORT_PUMP, (
        ("device_time_ms", "Q", "ms"),
        ("crc", "I", ""),
    ), None),
)
# fmt: on

# The role a request needs (SPEC section 21); a request not named here is
# READ_ONLY. The rig port has no sessions: it is the test fixture, not a
# peer of the implant.
MESSAGE_ROLES = (
    ("PATIENT_BOLUS", ROLE_PATIENT),
    ("AUTH_CLOSE", ROLE_PATIENT),
    ("PROGRAM", ROLE_CLINICIAN),
    ("CONFIRM", ROLE_CLINICIAN),
    ("CANCEL_PROGRAM", ROLE_CLINICIAN),
    ("START", ROLE_CLINICIAN),
    ("STOP", ROLE_CLINICIAN),
    ("BOLUS", ROLE_CLINICIAN),
    ("CANCEL_BOLUS", ROLE_CLINICIAN),
    ("REFILL", ROLE_CLINICIAN),
    ("CATHETER", ROLE_CLINICIAN),
    ("CLEAR_ALARM", ROLE_CLINICIAN),
    ("ACK_ALARM", ROLE_CLINICIAN),
    ("SET_CLOCK", ROLE_CLINICIAN),
)
# Every request above but AUTH_CLOSE changes therapy: it needs a request id
# and runs at most once per id (SPEC section 23).
ONCE_EXCEPT = ("AUTH_CLOSE",)

# Queries: requests that change nothing on the device. Sent plain (without
# FLAG_AUTH) they are answered afresh every time and never held in the reply
# cache (SPEC section 7), so no number of them (a keyless flood, a poller)
# can push the cached reply of a request with an effect (ADVANCE, RESET,
# AUTH_CHALLENGE, ...) out of the cache before its retransmission arrives.
QUERIES = (
    "HELLO",
    "PING",
    "STATUS",
    "LINK_STATS",
    "GET_PROGRAM",
    "GET_LOG",
    "GET_ACCESS_LOG",
    "OUTCOME",
    "RIG_HELLO",
    "TRUTH",
    "TRACE",
    "ANNUNCIATION",
    "HEAP",
)

# Largest ADVANCE the rig accepts in one request: one year of device time.
MAX_ADVANCE_MS = 366 * 24 * 3600 * 1000


def _canonical():
    # A stable text rendering of every table above, in parts; the CRC-32 of
    # the parts joined by ";" is the fingerprint. Both interpreters produce
    # the same text.
    parts = ["v%d;h%s;p%d" % (PROTOCOL_VERSION, HEADER_FORMAT, MAX_PAYLOAD)]
    for code, name in ERRORS:
        parts.append("e%d=%s" % (code, name))
    for prefix, table in VOCABULARIES:
        for code, name in table:
            parts.append("%s%d=%s" % (prefix, code, name))
    for code, name, level in ALARMS:
        parts.append("a%d=%s/%d" % (code, name, level))
    for code, name in LIMITS:
        parts.append("x%d=%s" % (code, name))
    for code, name in PRIORITIES:
        parts.append("y%d=%s" % (code, name))
    for code, name in ALARM_ACTIONS:
        parts.append("z%d=%s" % (code, name))
    for code, name in FAULTS:
        parts.append("f%d=%s" % (code, name))
    for code, name in LOG_CODES:
        parts.append("l%d=%s" % (code, name))
    for code, name in ROLES:
        parts.append("o%d=%s" % (code, name))
    for name, role in MESSAGE_ROLES:
        parts.append("n%s=%d" % (name, role))
    parts.append(
        "k%d/%d/%d/%d/%d/%d/%d/%s/%d/%d/%d/%s/%s;%s;%s;%s;%s"
        % (
            FLAG_AUTH,
            REQUEST_ID_SIZE * 100 + REPLY_MAC_SIZE,
            OUTCOMES_KEPT,
            OUTCOME_REPLY_SIZE,
            KEY_SIZE,
            NONCE_SIZE,
            MAC_SIZE,
            AUTH_TRAILER_FORMAT,
            SESSION_IDLE_S,
            SESSION_MAX_S,
            CHALLENGE_S,
            ",".join(ACCESS_LOG_CODES),
            KEYSTORE_FILE + KEYSTORE_MAGIC.decode(),
            LABEL_OPEN.decode(),
            LABEL_PUMP.decode(),
            LABEL_SESSION.decode(),
            ",".join(ONCE_EXCEPT),
        )
    )
    parts.append("q" + ",".join(QUERIES))
    for msg_id, name, port, request, reply in MESSAGES:
        text = "m%d=%s@%s:" % (msg_id, name, port)
        for fname, fmt, unit in request:
            text += "%s/%s/%s," % (fname, fmt, unit)
        text += "|"
        if reply is None:
            text += "event"
        else:
            for fname, fmt, unit in reply:
                text += "%s/%s/%s," % (fname, fmt, unit)
        parts.append(text)
    return parts


def compute_fingerprint():
    # CRC-32 of the parts joined by ";", computed part by part: no one
    # string of the whole (several KB) is needed, so a MicroPython check
    # script with a small heap can import this module.
    crc = 0
    for i, part in enumerate(_canonical()):
        if i:
            crc = binascii.crc32(b";", crc)
        crc = binascii.crc32(part.encode(), crc)
    return crc & 0xFFFFFFFF


# The firmware does not import this module: it uses protocol/table.py, a
# compact view generated from these tables (`make vectors`), which carries
# the same FINGERPRINT as a literal.
FINGERPRINT = compute_fingerprint()


def struct_format(fields):
    # The struct format of a field tuple, e.g. "<QQBH".
    fmt = "<"
    for _name, code, _unit in fields:
        fmt += code
    return fmt


def message_by_name(name):
    for entry in MESSAGES:
        if entry[1] == name:
            return entry
    raise KeyError(name)


def required_role(name):
    for entry in MESSAGE_ROLES:
        if entry[0] == name:
            return entry[1]
    return ROLE_READ_ONLY


def role_name(code):
    return _name_in(ROLES, code, "ROLE")


def message_by_id(msg_id):
    # Returns the table entry or None (unknown ids are a normal event on a
    # noisy link, not an exception).
    for entry in MESSAGES:
        if entry[0] == msg_id:
            return entry
    return None


def error_name(code):
    return _name_in(ERRORS, code, "ERROR")


def _name_in(table, code, prefix):
    for entry in table:
        if entry[0] == code:
            return entry[1]
    return "%s_%d" % (prefix, code)


def alarm_priority(code):
    for entry in ALARMS:
        if entry[0] == code:
            return entry[2]
    return 0


def limit_name(code):
    return _name_in(LIMITS, code, "LIMIT")


def fault_name(code):
    return _name_in(FAULTS, code, "FAULT")


def priority_name(code):
    return _name_in(PRIORITIES, code, "PRIORITY")


def alarm_name(code):
    return _name_in(ALARMS, code, "ALARM")


def log_name(code):
    return _name_in(LOG_CODES, code, "LOG")


def state_name(code):
    return _name_in(STATES, code, "STATE")
