# The Pico board: pin map and board options, in ONE place.
#
# hal/rp2.py reads only this module (main.py hands it over); nothing else in
# the firmware knows a pin number. Wiring, bill of materials and calibration
# procedures: docs/hardware.md. Change a value here and reflash (make flash).
#
# GPIO numbers are the Pico's GPn numbers (not the package pin numbers).
# The same map fits a Raspberry Pi Pico (RP2040) and a Pico 2 (RP2350).

from micropython import const

# --- board -------------------------------------------------------------------
BOARD_NAME = "pico"  # reported at HELLO (16 characters at most)
CHIP = "rp2040"  # "rp2040" (Pico) or "rp2350" (Pico 2): watchdog range, mpy arch
DEVICE_ID = ""  # "" = the flash chip's unique id in hex (16 characters)

# --- stepper driver (TMC2209 in standalone mode, or A4988) -------------------
STEP_PIN = const(2)  # STEP input of the driver, driven by a PIO state machine
DIR_PIN = const(3)  # DIR input; held at DIR_FORWARD during every move
ENABLE_PIN = const(6)  # EN (TMC2209) / ENABLE (A4988): active low on both
ENABLE_ACTIVE_LOW = True
DIR_FORWARD = const(1)  # DIR level that turns the head in the delivery direction
# Driver settle time after EN/DIR change, before the first step edge, in us
# (A4988: 200 ns DIR setup, 1 ms out of sleep if SLEEP is wired; TMC2209: ~0).
DRIVER_SETTLE_US = const(50)

# Step generation: PIO0, state machine STEP_SM, clocked at STEP_PIO_HZ. One
# step takes 2 * Y + 7 PIO cycles where Y is the delay-loop count the CPU
# computes from the rate, so any rate from MIN to MAX works at this clock
# (the state machine clock itself cannot go below 1908 Hz at 125 MHz).
STEP_SM = const(0)
STEP_PIO_HZ = const(1_000_000)  # 1 us per PIO cycle
# Default steps/s: an 8-step stroke takes 20 ms, pump.drive.STROKE_MS, the
# instant its "peak" pressure is read and the span the monitors' model (and the
# virtual plant) spreads it over. At 800 Hz the line drained for 10 ms before
# the peak and read half the rise (pico/README.md).
STEP_RATE_HZ = const(400)
MIN_STEP_RATE_HZ = const(1)
MAX_STEP_RATE_HZ = const(5_000)
# Volume per motor step of this pump head and tube, in picolitres: what the
# drive converts encoder steps with (docs/hardware.md "Calibrating nL per
# step"). 25 000 pL = 25 nL: an 8-step stroke is 200 nL.
PL_PER_STEP = const(25_000)
# Largest move the motor accepts: a stroke is 8 steps, a retry or priming
# move a few strokes. Anything above is refused (no "run until stopped").
MAX_MOVE_STEPS = const(64)

# --- motor feedback ------------------------------------------------------------
# "pio":  encoder channel A counted by PIO state machine ENCODER_SM (keeps
#         counting through flash writes; default);
# "irq":  encoder channel A counted by a hard GPIO interrupt (loses edges
#         while a flash write holds interrupts off: littlefs flushes are kept
#         out of strokes, but a command that writes during a stroke can
#         still cost edges);
# "diag": no encoder: steps the PIO issued until the driver's DIAG (stall)
#         pin rose (TMC2209 StallGuard). An upper bound of what moved.
ENCODER = "pio"
ENCODER_PIN = const(8)  # channel A (rising edges are counted)
ENCODER_B_PIN = const(9)  # channel B: wired, not used by the counter yet
ENCODER_PULL_UP = True  # open-collector encoders need the pull-up
ENCODER_SM = const(1)
ENCODER_PIO_HZ = const(2_000_000)  # pulses shorter than ~1 us are ignored
# Encoder edges -> motor steps: steps = edges * NUM / DEN (remainder carried).
# The drive checks every 8-step stroke exactly, so use an encoder with at
# least one edge per step (e.g. AS5600 ABI output at 200 pulses/rev on a
# 200-step motor: NUM = DEN = 1).
ENCODER_STEPS_NUM = const(1)
ENCODER_EDGES_DEN = const(1)
DIAG_PIN = const(7)  # TMC2209 DIAG (high on stall); used when ENCODER == "diag"

# --- pressure sensor (ADC) -----------------------------------------------------
# Default: a ratiometric 3.3 V gauge sensor, 0-15 psi (0-775.7 mmHg), output
# 10 %-90 % of supply (e.g. Honeywell SSCDANN015PGAA3). Its range must reach
# past the occlusion ceiling (517 mmHg, pump/monitors/occlusion.py): a 0-5 psi
# part saturated at 258.6 mmHg and a blocked line read as a leak on the
# emulated Pico. Calibrate per unit: docs/hardware.md "Calibrating the
# pressure sensor".
PRESSURE_ADC_PIN = const(26)  # ADC0
PRESSURE_OFFSET_RAW = const(6554)  # read_u16() counts at 0 mmHg (gauge)
PRESSURE_GAIN = const(9696)  # 0.1 mmHg per 65536 counts above the offset
PRESSURE_OVERSAMPLE = const(8)  # ADC reads per sample (min and max dropped)
# No filter across samples: each reading is the pressure at that instant (the
# monitors compare readings 20 ms to minutes apart; hal/rp2.py says why).

# --- battery (ADC) ---------------------------------------------------------------
# GP29 = ADC3 reads VSYS through the Pico's own 3:1 divider. For a battery
# behind a separate divider, use GP27/GP28 and set the full-scale millivolts.
BATTERY_ADC_PIN = const(29)
BATTERY_MV_FULL_SCALE = const(9900)  # mV at read_u16() = 65536 (3.3 V x 3)

# --- annunciator: buzzer (PWM) and alarm LED -------------------------------------
BUZZER_PIN = const(15)  # passive piezo/magnetic buzzer through a transistor
BUZZER_HZ = const(880)  # fundamental 150-1000 Hz (IEC 60601-1-8)
BUZZER_DUTY_U16 = const(32768)  # 50 %: square wave, rich in harmonics
LED_PIN = const(25)  # on-board LED of the Pico / Pico 2 (not the Pico W)
LED_ACTIVE_HIGH = True
ALARM_TICK_MS = const(25)  # pattern timer period

# --- ports ---------------------------------------------------------------------
# The pump port: "usb" (USB CDC, the REPL's stdin/stdout) or "uart".
PUMP_PORT = "usb"
PUMP_UART_ID = const(0)
PUMP_UART_TX = const(0)
PUMP_UART_RX = const(1)
PUMP_UART_BAUD = const(115_200)
# The rig port on a UART, for a physical rig fixture (the pump firmware
# itself serves nothing on it). RIG_UART_ID = -1: no rig port.
RIG_UART_ID = const(1)
RIG_UART_TX = const(4)
RIG_UART_RX = const(5)
RIG_UART_BAUD = const(115_200)
UART_RXBUF = const(512)  # bytes buffered by the UART driver

# --- watchdog and sleep ------------------------------------------------------------
# machine.WDT, armed by the supervisor's first board.feed_watchdog() and fed
# only there. At most 8388 ms on the RP2040, 16777 ms on the RP2350; it can
# never be stopped once armed. WATCHDOG = False for bench development only.
WATCHDOG = True
WATCHDOG_MS = const(8_000)
WATCHDOG_MARGIN_MS = const(1_000)  # idle() returns this long before expiry
# machine.lightsleep stops PIO, PWM, the ADC clock and the pattern timer:
# only with the motor stopped, the annunciator quiet and the ports quiet,
# and never longer than the watchdog allows.
LIGHTSLEEP = True
LIGHTSLEEP_MIN_MS = const(50)
LIGHTSLEEP_MAX_MS = const(500)  # a request on a quiet port waits this long at most
PORT_QUIET_MS = const(10_000)  # no lightsleep this long after a received byte

# --- journal (littlefs at /, mounted by MicroPython) -------------------------------
JOURNAL_DIR = "/journal"
JOURNAL_BATCH_BYTES = const(512)  # appends held in RAM before a flush
JOURNAL_FLUSH_MS = const(10_000)  # ... and at most this long (motor stopped)
# Device seconds survive a reset through a small file written this often;
# after a reset the clock resumes from the last save (it may repeat up to
# this many seconds, never jump ahead: the dose windows stay conservative).
CLOCK_SAVE_S = const(60)

# --- maintenance ------------------------------------------------------------------
# BOOTSEL pressed within this long after reset keeps the pump application
# from starting and leaves the REPL to mpremote (make flash). Ctrl-C never
# does: it is off from the start, the pump port being USB CDC.
MAINTENANCE_WINDOW_MS = const(2_000)
