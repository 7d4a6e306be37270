# Monitors: small hardware-free detectors the app feeds with samples and
# device time (README.md in this directory). Each returns an alarm id from
# the schema (protocol/schema.py ALARMS) or 0; the ids are repeated here as
# plain ints so that a monitor imports nothing but itself (a host test checks
# them against the schema).

LOST_STEPS = 4
MEMORY = 6
OCCLUSION = 8
PARTIAL_OCCLUSION = 9
LEAK = 10
MOTOR_STALL = 11
RUNAWAY = 12
ENCODER_FAILURE = 13
SENSOR_FAULT = 14
BATTERY_ERI = 15
BATTERY_EOS = 16
CLOCK_FAULT = 20
SENSING_LIMITED = 24
TIP_MIGRATION = 25
SLOW_LEAK = 26
