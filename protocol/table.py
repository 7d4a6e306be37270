# GENERATED from protocol/schema.py by `make vectors` (protocol/generate.py).
# Do not edit: change the schema and regenerate; a test fails when stale.
#
# The firmware's compact view of the schema: protocol constants, message ids
# and the struct format of every payload. The full schema (names, units,
# descriptions) stays on the host, where its heap costs nothing.

PROTOCOL_VERSION = 1
FINGERPRINT = 0x84022AEB
HEADER_FORMAT = "<BBHBB"
HEADER_SIZE = 6
CRC_SIZE = 4
MAX_PAYLOAD = 240
MAX_BODY = 250
MAX_ENCODED = 251
MAX_WIRE = 253
MAX_ADVANCE_MS = 31622400000
FLAG_REPLY = 1
FLAG_ERROR = 2
FLAG_EVENT = 4
LINK_ERROR_LIMIT = 16

# error codes (NACK)
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

# message ids; <NAME>_REQUEST / _REPLY / _EVENT: struct formats
HELLO = 0x01
HELLO_REQUEST = "<BI"
HELLO_REPLY = "<B16s16s16sI"
PING = 0x02
PING_REQUEST = "<I"
PING_REPLY = "<I"
STATUS = 0x03
STATUS_REQUEST = "<"
STATUS_REPLY = "<QQBHBIIIBIIIBiIBII"
LINK_STATS = 0x04
LINK_STATS_REQUEST = "<"
LINK_STATS_REPLY = "<IIIIIIII"
PROGRAM = 0x05
PROGRAM_REQUEST = "<BIBIB24H24I24BIIBIB"
PROGRAM_REPLY = "<IHII"
GET_PROGRAM = 0x06
GET_PROGRAM_REQUEST = "<B"
GET_PROGRAM_REPLY = "<IBIBIB24H24I24BIIBIB"
CONFIRM = 0x07
CONFIRM_REQUEST = "<I"
CONFIRM_REPLY = "<I"
CANCEL_PROGRAM = 0x08
CANCEL_PROGRAM_REQUEST = "<"
CANCEL_PROGRAM_REPLY = "<"
START = 0x09
START_REQUEST = "<"
START_REPLY = "<B"
STOP = 0x0A
STOP_REQUEST = "<"
STOP_REPLY = "<B"
BOLUS = 0x0B
BOLUS_REQUEST = "<BIIIHHB"
BOLUS_REPLY = "<HI"
PATIENT_BOLUS = 0x0C
PATIENT_BOLUS_REQUEST = "<"
PATIENT_BOLUS_REPLY = "<HI"
CANCEL_BOLUS = 0x0D
CANCEL_BOLUS_REQUEST = "<"
CANCEL_BOLUS_REPLY = "<I"
REFILL = 0x0E
REFILL_REQUEST = "<II"
REFILL_REPLY = "<IiBI"
GET_LOG = 0x0F
GET_LOG_REQUEST = "<IB"
GET_LOG_REPLY = "<IBI12I12I12H12I12i"
CLEAR_ALARM = 0x10
CLEAR_ALARM_REQUEST = "<B"
CLEAR_ALARM_REPLY = "<I"
SET_CLOCK = 0x11
SET_CLOCK_REQUEST = "<I"
SET_CLOCK_REPLY = "<"
RIG_HELLO = 0x40
RIG_HELLO_REQUEST = "<BI"
RIG_HELLO_REPLY = "<B16sII"
ADVANCE = 0x41
ADVANCE_REQUEST = "<Q"
ADVANCE_REPLY = "<Q"
RESET = 0x42
RESET_REQUEST = "<"
RESET_REPLY = "<"
TRUTH = 0x43
TRUTH_REQUEST = "<"
TRUTH_REPLY = "<IIIIBI"
POWER = 0x44
POWER_REQUEST = "<BI"
POWER_REPLY = "<B"
PLANT = 0x45
PLANT_REQUEST = "<iIII"
PLANT_REPLY = "<"
INJECT_FAULT = 0x46
INJECT_FAULT_REQUEST = "<Bi"
INJECT_FAULT_REPLY = "<"
CLEAR_FAULT = 0x47
CLEAR_FAULT_REQUEST = "<B"
CLEAR_FAULT_REPLY = "<"
HEAP = 0x49
HEAP_REQUEST = "<"
HEAP_REPLY = "<IIII"
FILL = 0x48
FILL_REQUEST = "<I"
FILL_REPLY = "<I"
BOOT = 0x80
BOOT_EVENT = "<QBH"
ALARM = 0x81
ALARM_EVENT = "<QBBI"
BOLUS_EVENT = 0x82
BOLUS_EVENT_EVENT = "<QHBBI"
PROGRAM_CHANGED = 0x83
PROGRAM_CHANGED_EVENT = "<QI"
NACK_REPLY = "<BH"

# requests each port takes: message id -> request payload size
PUMP_REQUESTS = {
    HELLO: 5,
    PING: 4,
    STATUS: 0,
    LINK_STATS: 0,
    PROGRAM: 193,
    GET_PROGRAM: 1,
    CONFIRM: 4,
    CANCEL_PROGRAM: 0,
    START: 0,
    STOP: 0,
    BOLUS: 18,
    PATIENT_BOLUS: 0,
    CANCEL_BOLUS: 0,
    REFILL: 8,
    GET_LOG: 5,
    CLEAR_ALARM: 1,
    SET_CLOCK: 4,
}
RIG_REQUESTS = {
    PING: 4,
    LINK_STATS: 0,
    RIG_HELLO: 5,
    ADVANCE: 8,
    RESET: 0,
    TRUTH: 0,
    POWER: 5,
    PLANT: 16,
    INJECT_FAULT: 5,
    CLEAR_FAULT: 1,
    HEAP: 0,
    FILL: 4,
}
ALL_IDS = (
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
    0x08,
    0x09,
    0x0A,
    0x0B,
    0x0C,
    0x0D,
    0x0E,
    0x0F,
    0x10,
    0x11,
    0x40,
    0x41,
    0x42,
    0x43,
    0x44,
    0x45,
    0x46,
    0x47,
    0x49,
    0x48,
    0x80,
    0x81,
    0x82,
    0x83,
)

# the program's fields in order: (name, number of struct values)
PROGRAM_FIELDS = (
    ("drug_id", 1),
    ("conc_ug_ml", 1),
    ("mode", 1),
    ("basal_nl_day", 1),
    ("flex_count", 1),
    ("flex_start_min", 24),
    ("flex_rate_nl_day", 24),
    ("flex_days", 24),
    ("pb_dose_nl", 1),
    ("pb_lockout_s", 1),
    ("pb_max_per_day", 1),
    ("low_reservoir_nl", 1),
    ("override_soft", 1),
)
