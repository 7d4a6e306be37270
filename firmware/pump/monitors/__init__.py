# Monitors: small hardware-free detectors the app feeds with samples and
# device time (README.md in this directory). Each returns an alarm id from
# the schema (protocol/schema.py ALARMS) or 0, by the names below (the ids
# are protocol/table.py's, generated from the schema).

# The monitors import these names from here.
# isort: off
from protocol.table import (
    ALARM_LOST_STEPS as LOST_STEPS,  # noqa: F401
    ALARM_MEMORY as MEMORY,  # noqa: F401
    ALARM_OCCLUSION as OCCLUSION,  # noqa: F401
    ALARM_PARTIAL_OCCLUSION as PARTIAL_OCCLUSION,  # noqa: F401
    ALARM_LEAK as LEAK,  # noqa: F401
    ALARM_MOTOR_STALL as MOTOR_STALL,  # noqa: F401
    ALARM_RUNAWAY as RUNAWAY,  # noqa: F401
    ALARM_ENCODER_FAILURE as ENCODER_FAILURE,  # noqa: F401
    ALARM_SENSOR_FAULT as SENSOR_FAULT,  # noqa: F401
    ALARM_BATTERY_ERI as BATTERY_ERI,  # noqa: F401
    ALARM_BATTERY_EOS as BATTERY_EOS,  # noqa: F401
    ALARM_CLOCK_FAULT as CLOCK_FAULT,  # noqa: F401
    ALARM_SENSING_LIMITED as SENSING_LIMITED,  # noqa: F401
    ALARM_TIP_MIGRATION as TIP_MIGRATION,  # noqa: F401
    ALARM_SLOW_LEAK as SLOW_LEAK,  # noqa: F401
)
# isort: on
