// The emulated Raspberry Pi Pico: stock MicroPython (UF2) on rp2040js 1.4.1.
//
//   node pico/harness.mjs --bootrom FILE --flash FILE [--uf2 FILE --fs FILE]
//                         [--cdc-fd 3] [--control-fd 4] [--mode fast|realtime|lockstep]
//                         [--rig-fd 5]
//
// --flash FILE holds the board's 2 MiB flash array: read at start, written
// back on every reset, power cut and at exit (so a board keeps its files as
// a real one does). When it does not exist it is made from --uf2 (the
// firmware blocks) and --fs (a littlefs image placed at the filesystem
// offset). --cdc-fd is a socket carrying the USB CDC bytes both ways (the
// Python side relays it to a pty); --control-fd carries JSON lines
// (requests with an "id", answers with the same "id", and events).
// --rig-fd is the plant process (firmware/virtual/pico_rig.py, the rig around this
// board): the same requests, and the pins ask it for the plant's answer. On
// every STEP edge with the driver on, and on an ADC conversion of the
// pressure or battery input, the chip stops (emulated time stands still)
// until the plant process answers: the encoder edges the head really made,
// or the ADC level at that instant (valid until the time it names).
//
// Fixes to stock rp2040js 1.4.1, all from outside the package (see
// pico/README.md):
//   1. flash erase/program: IO_QSPI, SSI and a NOR chip (flash.mjs);
//   2. PIO timing: one clock alarm per state machine step, (1 + delay) x
//      clkdiv / clk_sys apart, instead of 1000 steps per host timer;
//   3. watchdog expiry: a fresh chip with the flash array and the watchdog's
//      REASON and SCRATCH registers carried across;
//   4. USB OUT: held until the host has data (no zero-length packet storm),
//      host input buffered without limit.

import fs from 'node:fs';
import net from 'node:net';
import { RP2040, USBCDC, GPIOPinState } from 'rp2040js';
import { Ssi, IoQspi, NorFlash, FLASH_SIZE } from './flash.mjs';

const FS_OFFSET = 0xa0000; // MicroPython v1.28 RPI_PICO: littlefs at 0x100A0000
const UF2_MAGIC0 = 0x0a324655;
const UF2_MAGIC1 = 0x9e5d5157;
const WATCHDOG_BASE = 0x40058;
const SSI_BASE = 0x18000;
const IO_QSPI_BASE = 0x40018;
const VREG_AND_CHIP_RESET_BASE = 0x40064;

// Registers that read back what was written (stock rp2040js reads 0xffffffff
// from VREG_AND_CHIP_RESET, which the bootrom takes as "PSM restart by a
// debugger" and parks the core in WFE).
class RegisterFile {
  constructor(name, values) {
    this.name = name;
    this.regs = new Uint32Array(64);
    for (const [offset, value] of Object.entries(values)) this.regs[Number(offset) >> 2] = value;
    this.rawWriteValue = 0;
  }
  readUint32(offset) {
    return offset < 256 ? this.regs[offset >> 2] : 0;
  }
  writeUint32(offset, value) {
    if (offset < 256) this.regs[offset >> 2] = value;
  }
  writeUint32Atomic(offset, value, atomicType) {
    this.rawWriteValue = value;
    const cur = this.readUint32(offset);
    const next = atomicType === 1 ? cur ^ value : atomicType === 2 ? cur | value : atomicType === 3 ? cur & ~value : value;
    this.writeUint32(offset, next >>> 0);
  }
}

// --- options -------------------------------------------------------------------
function options(argv) {
  const opts = { cdcFd: 3, controlFd: 4, rigFd: -1, mode: 'fast', uid: '5050494d50000001' };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-(.)/g, (_m, c) => c.toUpperCase());
    opts[key] = argv[i + 1];
  }
  for (const k of ['cdcFd', 'controlFd', 'rigFd']) opts[k] = Number(opts[k]);
  if (!opts.bootrom || !opts.flash) {
    process.stderr.write('usage: harness.mjs --bootrom FILE --flash FILE [--uf2 FILE --fs FILE]\n');
    process.exit(2);
  }
  return opts;
}

const opts = options(process.argv);

function log(message) {
  process.stderr.write(`pico: ${message}\n`);
}

// --- flash array -----------------------------------------------------------------
function loadUf2(image, data) {
  let blocks = 0;
  for (let off = 0; off + 512 <= data.length; off += 512) {
    const view = new DataView(data.buffer, data.byteOffset + off, 512);
    if (view.getUint32(0, true) !== UF2_MAGIC0 || view.getUint32(4, true) !== UF2_MAGIC1) continue;
    const address = view.getUint32(12, true);
    const size = view.getUint32(16, true);
    const target = address - 0x10000000;
    if (target < 0 || target + size > FLASH_SIZE) continue;
    image.set(data.subarray(off + 32, off + 32 + size), target);
    blocks++;
  }
  return blocks;
}

function initialFlash() {
  const image = new Uint8Array(FLASH_SIZE).fill(0xff);
  if (fs.existsSync(opts.flash)) {
    const saved = fs.readFileSync(opts.flash);
    image.set(saved.subarray(0, FLASH_SIZE));
    return image;
  }
  if (!opts.uf2) {
    log(`${opts.flash} does not exist and no --uf2 given`);
    process.exit(2);
  }
  const blocks = loadUf2(image, fs.readFileSync(opts.uf2));
  if (!blocks) {
    log(`${opts.uf2}: no UF2 blocks for the RP2040 flash`);
    process.exit(2);
  }
  if (opts.fs) {
    image.set(fs.readFileSync(opts.fs), FS_OFFSET);
  }
  return image;
}

const flashImage = initialFlash();
const bootrom = new Uint32Array(new Uint8Array(fs.readFileSync(opts.bootrom)).buffer);
const uniqueId = Buffer.from(opts.uid, 'hex');

function saveFlash() {
  if (chip) flashImage.set(chip.view);
  const tmp = `${opts.flash}.tmp`;
  fs.writeFileSync(tmp, flashImage);
  fs.renameSync(tmp, opts.flash);
}

// --- the chip ----------------------------------------------------------------------
let chip = null; // { rp2040, clock, cdc, ... }
let powered = true;
let resets = { power_on: 0, watchdog: 0, forced: 0 };
let pendingReset = null; // set inside an emulated instruction, acted on between slices
const pins = makePinState();
// 12-bit values per ADC channel (GP26-GP29, temperature). At rest, with
// board_config's calibration: 7.4 mmHg on the 0-15 psi pressure sensor
// (GP26: 16-bit 6554 + 508 counts) and 3.0 V of battery on VSYS/3 (GP29).
const adcRaw = [441, 0, 0, 1241, 0];
// Without the plant: each conversion reads adcBase +- adcNoise counts (uniform,
// a fixed xorshift sequence), as a real sensor's noise; 0: the value as set.
// (A pressure that never moves is a stuck sensor to the pump: SENSOR_FAULT.)
const adcBase = adcRaw.slice();
const adcNoise = [0, 0, 0, 0, 0];
let noiseState = 0x2545f491;
function noisyRaw(ch) {
  noiseState ^= noiseState << 13;
  noiseState ^= noiseState >>> 17;
  noiseState ^= noiseState << 5;
  noiseState >>>= 0;
  const n = adcNoise[ch];
  return Math.min(4095, Math.max(0, adcBase[ch] + (noiseState % (2 * n + 1)) - n));
}
const hostInput = []; // Buffers from the host not yet given to the device
let hostInputBytes = 0;
let cutAtStep = 0; // power cut when the STEP pin has risen this often (0: never)
let pendingCut = false;
let bootsel = false; // BOOTSEL held (QSPI_SS low): the bootrom's and rp2.bootsel_button()'s view
let encoderMode = 'echo'; // echo | stall | none: what channel A does when STEP moves
let lostEvery = 0; // encoder: drop every Nth step (lost steps)
let extraPerStep = 0; // encoder: extra edges per step (runaway)
// The plant process (--rig-fd): while it owes an answer the chip stands still.
let rigSocket = null;
// Questions it has not answered yet, by number: { kind: 'step' | 'adc', ch }.
// (Two can be open: an ADC conversion started by an instruction and a STEP
// edge of the clock tick after it.)
const rigWait = new Map();
let questions = 0; // numbers the questions: an answer to one asked before a reset is dropped
const adcUntilNs = [0, 0, 0, 0, 0]; // elapsed time up to which adcRaw[ch] is the plant's answer
const PLANT_ADC = [0, 3]; // pressure (GP26) and battery (GP29/VSYS)
// Emulated time since the harness started, across resets and power cuts: a
// new chip's clock starts at 0, the rig's device time goes on.
let epochNs = 0;
function elapsedNs() {
  return epochNs + (chip ? chip.clock.nanos : 0);
}
function emitRig(message) {
  if (rigSocket) rigSocket.write(`${JSON.stringify(message)}\n`);
}

function makePinState() {
  return {
    stepRises: 0,
    stepRisesEnabled: 0,
    lastRiseNs: -1,
    periodMinNs: 0,
    periodMaxNs: 0,
    periodsNs: [], // the last few step periods
    encoderEdges: 0,
    moves: [], // STEP rises of each of the last few times the driver was on
    stepsThisMove: 0,
  };
}

function buildChip(reason, scratch) {
  const rp2040 = new RP2040();
  const clock = rp2040.clock;
  rp2040.logger = { debug() {}, info() {}, warn() {}, error(name, msg) { log(`${name}: ${msg}`); } };
  rp2040.loadBootrom(bootrom);
  // rp2040js keeps a 16 MiB array; the Pico has 2 MiB: share ours so that
  // every XIP read, erase and program works on the same bytes.
  rp2040.flash.set(flashImage, 0);
  const nor = new NorFlash(flashImage, uniqueId);
  const io = new IoQspi(rp2040, nor);
  const ssi = new Ssi(rp2040, nor, io);
  rp2040.peripherals[SSI_BASE] = ssi;
  rp2040.peripherals[IO_QSPI_BASE] = io;
  // VREG 0xb1, BOD 0x91 (reset values), CHIP_RESET 0: no debugger restart
  rp2040.peripherals[VREG_AND_CHIP_RESET_BASE] = new RegisterFile('VREG', { 0: 0xb1, 4: 0x91 });
  // XIP reads come from rp2040.flash: keep it the same array as the chip's.
  const view = rp2040.flash.subarray(0, FLASH_SIZE);
  nor.memory = view;
  // QSPI_SS is the BOOTSEL button: pulled up (released) unless the rig holds it
  // (rp2040js resets every pad with its input disabled; silicon has IE set)
  rp2040.qspi[1].padValue |= 0x40;
  rp2040.qspi[1].setInputValue(!bootsel);
  const watchdog = rp2040.peripherals[WATCHDOG_BASE];
  if (reason) {
    watchdog.reason = reason;
    watchdog.scratchData.set(scratch);
  }
  watchdog.onWatchdogTrigger = () => {
    // Fix 3: never let the 0 ns re-armed alarm spin; reset between slices.
    watchdog.alarm.enable = false;
    watchdog.timer.enable = false;
    pendingReset = { reason: watchdog.reason, scratch: Uint32Array.from(watchdog.scratchData) };
  };
  installPioTiming(rp2040, clock);
  installUartFix(rp2040);
  const cdc = installUsb(rp2040);
  installPins(rp2040, clock);
  const c = { rp2040, clock, cdc, nor, view };
  return c;
}

// Fix 2: PIO state machines stepped on the emulated clock.
function installPioTiming(rp2040, clock) {
  for (const pio of rp2040.pio) {
    pio.run = () => {}; // no more 1000 steps per host timer
    const alarms = pio.machines.map((sm) => {
      const alarm = clock.createAlarm(() => {
        alarm.scheduled = false; // (rp2040js leaves it set once fired)
        if (!sm.enabled) return;
        const before = sm.cycles;
        sm.step();
        pio.checkChangedPins();
        const used = sm.cycles - before;
        if (sm.waiting && used === 0) return; // stalled: woken by kick()
        // the other machines of this PIO may wait on an IRQ this one set
        kick(sm);
        schedule(sm, used > 0 ? used : 1);
      });
      return alarm;
    });
    const schedule = (sm, cycles) => {
      const div = (sm.clockDivInt || 65536) + sm.clockDivFrac / 256;
      alarms[sm.index].schedule((cycles * div * 1e9) / rp2040.clkSys);
    };
    const kick = (except = null) => {
      for (const sm of pio.machines) {
        if (sm !== except && sm.enabled && !alarms[sm.index].scheduled) schedule(sm, 1);
      }
    };
    pio.kick = kick;
    const write = pio.writeUint32.bind(pio);
    pio.writeUint32 = (offset, value) => {
      write(offset, value);
      kick();
    };
    const read = pio.readUint32.bind(pio);
    pio.readUint32 = (offset) => {
      const value = read(offset);
      kick();
      return value;
    };
  }
}

// Fix 5 (found here, not in the reference): stock RPUART raises its TX
// interrupt on every checkInterrupts(), including right after the handler
// clears it through UARTICR, so machine.UART() with its TX interrupt enabled
// never leaves the handler. On silicon the TX interrupt is raised when the
// FIFO drains below its level: here, after each byte written (it leaves at
// once), and stays cleared once UARTICR clears it.
const UARTDR = 0x00;
const UART_TXINTR = 1 << 5;
function installUartFix(rp2040) {
  for (const uart of rp2040.uart) {
    uart.checkInterrupts = function checkInterrupts() {
      this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
    };
    const write = uart.writeUint32.bind(uart);
    uart.writeUint32 = (offset, value) => {
      write(offset, value);
      if (offset === UARTDR) {
        uart.interruptStatus |= UART_TXINTR;
        uart.checkInterrupts();
      }
    };
  }
}

// Fix 4: the CDC host holds OUT transfers until it has data.
function installUsb(rp2040) {
  const cdc = new USBCDC(rp2040.usbCtrl);
  let pending = null; // [endpoint, size] of an OUT transfer the device armed
  const debug = process.env.PICO_DEBUG;
  if (debug) {
    cdc.onDeviceConnected = () => log('usb: cdc connected');
    const enabled = rp2040.usbCtrl.onUSBEnabled;
    rp2040.usbCtrl.onUSBEnabled = () => {
      log('usb: enabled');
      enabled();
    };
  }
  cdc.onSerialData = (buffer) => {
    if (firstTxNs < 0) firstTxNs = rp2040.clock.nanos;
    hostGraceNs = 0; // the board answered
    booting = false;
    if (cdcSocket) cdcSocket.write(Buffer.from(buffer));
  };
  rp2040.usbCtrl.onEndpointRead = (endpoint, size) => {
    if (endpoint === cdc.outEndpoint) {
      pending = [endpoint, size];
      feed();
    }
  };
  const feed = () => {
    if (!pending || hostInputBytes === 0) return;
    const [endpoint, size] = pending;
    pending = null;
    const out = new Uint8Array(Math.min(size, hostInputBytes));
    let n = 0;
    while (n < out.length) {
      const head = hostInput[0];
      const take = Math.min(head.length, out.length - n);
      out.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) hostInput.shift();
      else hostInput[0] = head.subarray(take);
    }
    hostInputBytes -= n;
    rp2040.usbCtrl.endpointReadDone(endpoint, out);
  };
  cdc.feed = feed;
  return cdc;
}

// The board's pins as the rig sees them (docs/hardware.md section 8).
const STEP_PIN = 2;
const ENABLE_PIN = 6;
const ENCODER_PIN = 8;
const ENABLE_ACTIVE_LOW = true;

function installPins(rp2040, clock) {
  const step = rp2040.gpio[STEP_PIN];
  const enable = rp2040.gpio[ENABLE_PIN];
  const encoder = rp2040.gpio[ENCODER_PIN];
  encoder.setInputValue(false);
  let stepsSeen = 0;
  const extra = clock.createAlarm(() => {
    if (extraLeft > 0) {
      setEncoder(!encoder.rawInputValue);
      if (!encoder.rawInputValue) extraLeft--;
      extra.schedule(20000); // 20 us per edge
    }
  });
  let extraLeft = 0;
  const setEncoder = (value) => {
    if (encoder.rawInputValue === value) return;
    encoder.setInputValue(value);
    if (value) pins.encoderEdges++;
    for (const pio of rp2040.pio) pio.kick();
  };
  const driverOn = () => {
    const level = enable.value === GPIOPinState.High;
    return ENABLE_ACTIVE_LOW ? !level : level;
  };
  let wasOn = false;
  enable.addListener(() => {
    const on = driverOn();
    if (on === wasOn) return;
    wasOn = on;
    if (on) {
      pins.stepsThisMove = 0;
    } else {
      pins.moves.push(pins.stepsThisMove);
      if (pins.moves.length > 64) pins.moves.shift();
    }
  });
  step.addListener((value) => {
    const high = value === GPIOPinState.High;
    if (high) {
      const now = clock.nanos;
      pins.stepRises++;
      if (driverOn()) {
        pins.stepRisesEnabled++;
        pins.stepsThisMove++;
      }
      if (cutAtStep > 0 && pins.stepRisesEnabled >= cutAtStep) {
        cutAtStep = 0;
        pendingCut = true; // acted on between slices, like a reset
      }
      if (pins.lastRiseNs >= 0) {
        const period = now - pins.lastRiseNs;
        pins.periodsNs.push(period);
        if (pins.periodsNs.length > 64) pins.periodsNs.shift();
      }
      pins.lastRiseNs = now;
    }
    if (rigSocket) {
      // The plant's answer: a step with the driver on turns the head (or
      // not: stall, lost steps, runaway), and the encoder shows what it did.
      if (high && driverOn()) {
        rigWait.set(++questions, { kind: 'step' });
        emitRig({ ev: 'step', q: questions, t: elapsedNs() });
      } else if (!high) {
        setEncoder(false);
        if (extraLeft && !extra.scheduled) extra.schedule(20000);
      }
      return;
    }
    if (!driverOn() || encoderMode !== 'echo') return;
    if (high) {
      stepsSeen++;
      if (lostEvery && stepsSeen % lostEvery === 0) return;
      setEncoder(true);
      if (extraPerStep) {
        extraLeft += extraPerStep;
      }
    } else {
      setEncoder(false);
      if (extraLeft && !extra.scheduled) extra.schedule(20000);
    }
  });
  rp2040.adc.channelValues = adcRaw; // shared: the rig's values, read on every conversion
  const adc = rp2040.adc;
  const convert = adc.onADCRead;
  adc.onADCRead = (channel) => {
    if (!rigSocket || !PLANT_ADC.includes(channel) || elapsedNs() < adcUntilNs[channel]) {
      if (!rigSocket && adcNoise[channel]) adcRaw[channel] = noisyRaw(channel);
      convert(channel);
      return;
    }
    rigWait.set(++questions, { kind: 'adc', ch: channel });
    emitRig({ ev: 'adc', ch: channel, q: questions, t: elapsedNs() });
  };
  // the plant process answered a step: this many encoder edges
  plantAnswers.step = (edges) => {
    if (edges > 0) {
      setEncoder(true);
      extraLeft += edges - 1;
    }
  };
  plantAnswers.adc = (channel) => convert(channel);
}

const plantAnswers = { step: null, adc: null };


let firstTxNs = -1; // emulated time of the first byte the board sent on USB CDC
// Lockstep: a chip that (re)boots runs its idle time (the pump's 2 s
// maintenance window sleeps) until it sends its first byte (the pump's BOOT),
// at most BOOT_GRACE_NS past the grant: after a rig RESET or POWER on, nobody
// sends it a byte until its BOOT has come, as on silicon, where a boot takes
// its time whatever the rig grants.
const BOOT_GRACE_NS = 10e9;
let booting = false;
let bootUntilNs = 0; // 0: not yet set (at the first slice of the new chip)
function powerOn(reason = 0, scratch = null) {
  firstTxNs = -1;
  booting = true;
  bootUntilNs = 0;
  chip = buildChip(reason, scratch);
  powered = true;
}

function powerOff() {
  // Everything in RAM is gone; the flash array is what it was at this instant.
  saveFlash();
  if (chip) epochNs += chip.clock.nanos;
  rigWait.clear();
  if (advanceWaiter) {
    // nothing runs while off; the time granted passes all the same
    epochNs = Math.max(epochNs, advanceWaiter.until);
    const w = advanceWaiter;
    advanceWaiter = null;
    w.out({ id: w.id, now_ns: 0, t: epochNs });
  }
  powered = false;
  chip = null;
}

function reset(kind, reason, scratch) {
  saveFlash(); // the flash array carries over to the new chip
  if (chip) epochNs += chip.clock.nanos;
  rigWait.clear();
  resets[kind]++;
  emit({ event: 'reset', cause: kind, resets });
  powerOn(reason, scratch);
}

// --- time -----------------------------------------------------------------------------
let mode = opts.mode;
let grantedNs = 0; // lockstep: idle time may not pass beyond this
// Lockstep: bytes from the host let idle time pass up to here, beyond the
// grant, until the board answers. The pump lightsleeps on a quiet port and
// a request waits out the sleep (LIGHTSLEEP_MAX_MS, 500 ms) as on silicon;
// with time held still it would never be answered.
let hostGraceNs = 0;
const HOST_GRACE_NS = 1e9;
let wallStart = process.hrtime.bigint();
let emuStartNs = 0;
let advanceWaiter = null; // { id, until }

function wallNs() {
  return Number(process.hrtime.bigint() - wallStart);
}

function setMode(next) {
  mode = next;
  wallStart = process.hrtime.bigint();
  emuStartNs = chip ? chip.clock.nanos : 0;
  // lockstep grants are in elapsed time: a reset does not take them back
  grantedNs = Math.max(grantedNs, elapsedNs());
}

const counters = { busyNs: 0, idleNs: 0, jumps: 0, waits: 0 }; // emulated time the CPU ran / waited
let running = false;
function loop() {
  running = false;
  if (!powered || !chip || rigWait.size) return; // (the plant process's answer resumes it)
  const sliceEnd = Date.now() + 20;
  let idleLimited = false;
  while (Date.now() < sliceEnd && chip) {
    const { rp2040, clock } = chip;
    const core = rp2040.core;
    const cycleNs = 1e9 / rp2040.clkSys;
    if (core.waiting) {
      let jump = clock.nanosToNextAlarm;
      let limit = Infinity;
      if (mode === 'lockstep') {
        if (booting && bootUntilNs === 0) bootUntilNs = elapsedNs() + BOOT_GRACE_NS;
        const boot = booting ? bootUntilNs : 0;
        limit = Math.max(grantedNs, hostGraceNs, boot) - elapsedNs();
      }
      else if (mode === 'realtime') limit = emuStartNs + wallNs() - clock.nanos;
      if (jump <= 0) jump = Infinity;
      if (jump > limit || jump === Infinity) {
        // nothing due before the limit (or nothing at all): wait outside
        if (limit > 0 && limit !== Infinity) clock.tick(limit);
        idleLimited = true;
        counters.waits++;
        break;
      }
      clock.tick(jump);
      counters.idleNs += jump;
      counters.jumps++;
    } else {
      const before = clock.nanos;
      for (let i = 0; i < 2000 && !core.waiting && !rigWait.size; i++) {
        const cycles = core.executeInstruction();
        clock.tick(cycles * cycleNs);
      }
      counters.busyNs += clock.nanos - before;
    }
    if (pendingCut) {
      pendingCut = false;
      powerOff();
      emit({ event: 'power_cut', step_rises_enabled: pins.stepRisesEnabled, resets });
      break;
    }
    if (pendingReset) {
      const { reason, scratch } = pendingReset;
      pendingReset = null;
      reset(reason & 2 ? 'forced' : 'watchdog', reason, scratch);
      break;
    }
    checkAdvance();
    if (rigWait.size) break;
  }
  if (!chip) return;
  checkAdvance();
  if (rigWait.size) return; // resumed by the plant process's answer
  if (idleLimited) {
    // waiting for the host, the wall clock or an ADVANCE
    setTimeout(schedule, mode === 'realtime' ? 1 : 5);
  } else {
    schedule();
  }
}

function schedule() {
  if (!running) {
    running = true;
    setImmediate(loop);
  }
}

function checkAdvance() {
  if (advanceWaiter && elapsedNs() >= advanceWaiter.until) {
    const w = advanceWaiter;
    advanceWaiter = null;
    w.out({ id: w.id, now_ns: chip ? chip.clock.nanos : 0, t: elapsedNs() });
  }
}

// --- sockets ---------------------------------------------------------------------------
const cdcSocket = new net.Socket({ fd: opts.cdcFd, readable: true, writable: true });
cdcSocket.on('data', (data) => {
  hostInput.push(new Uint8Array(data));
  hostInputBytes += data.length;
  hostGraceNs = Math.max(hostGraceNs, elapsedNs() + HOST_GRACE_NS);
  if (chip) chip.cdc.feed();
  schedule();
});
cdcSocket.on('error', () => {});

function jsonLines(socket, onMessage) {
  let buffer = '';
  socket.on('data', (data) => {
    buffer += data.toString();
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.trim()) onMessage(JSON.parse(line));
    }
  });
}

const control = new net.Socket({ fd: opts.controlFd, readable: true, writable: true });
jsonLines(control, (req) => handle(req, emit));
control.on('end', shutdown);
control.on('error', shutdown);

if (opts.rigFd >= 0) {
  rigSocket = new net.Socket({ fd: opts.rigFd, readable: true, writable: true });
  jsonLines(rigSocket, (msg) => {
    if (msg.cmd === 'step_done' || msg.cmd === 'adc_done') return plantAnswer(msg);
    return handle(msg, emitRig);
  });
  rigSocket.on('end', shutdown);
  rigSocket.on('error', shutdown);
}

// The plant process answered what the chip stopped for: it runs on.
function plantAnswer(msg) {
  const wait = rigWait.get(msg.q);
  if (!wait || !chip) return; // stale: asked of a chip since reset
  rigWait.delete(msg.q);
  if (wait.kind === 'step' && msg.cmd === 'step_done') {
    plantAnswers.step(msg.edges);
  } else if (wait.kind === 'adc' && msg.cmd === 'adc_done') {
    adcRaw[wait.ch] = msg.raw & 0xfff;
    adcUntilNs[wait.ch] = msg.until;
    plantAnswers.adc(wait.ch);
  }
  if (!rigWait.size) schedule();
}

function emit(message) {
  control.write(`${JSON.stringify(message)}\n`);
}

function status() {
  const periods = pins.periodsNs;
  return {
    powered,
    mode,
    now_ns: chip ? chip.clock.nanos : 0,
    t: elapsedNs(),
    clk_sys: chip ? chip.rp2040.clkSys : 0,
    pc: chip ? chip.rp2040.core.PC : 0,
    waiting: chip ? chip.rp2040.core.waiting : false,
    resets,
    step_rises: pins.stepRises,
    step_rises_enabled: pins.stepRisesEnabled,
    step_periods_ns: periods.slice(-16),
    moves: pins.moves.slice(-16),
    encoder_edges: pins.encoderEdges,
    flash_programs: chip ? chip.nor.programs : 0,
    flash_erases: chip ? chip.nor.erases : 0,
    host_input_bytes: hostInputBytes,
    first_tx_ns: firstTxNs,
    busy_ns: counters.busyNs,
    idle_ns: counters.idleNs,
    jumps: counters.jumps,
    waits: counters.waits,
  };
}

function handle(req, out) {
  const { id, cmd } = req;
  const reply = (ident, body) => out({ id: ident, ...body });
  try {
    switch (cmd) {
      case 'status':
        return reply(id, status());
      case 'mode':
        setMode(req.mode);
        schedule();
        return reply(id, status());
      case 'advance': {
        // lockstep: let idle time pass up to now + ms; answer when reached
        // (or, with until_ns, up to that elapsed time)
        if (mode !== 'lockstep') setMode('lockstep');
        const base = Math.max(grantedNs, elapsedNs());
        grantedNs = req.until_ns !== undefined ? Math.max(base, req.until_ns) : base + req.ms * 1e6;
        if (!chip) {
          // powered off: nothing runs, time passes all the same
          epochNs = Math.max(epochNs, grantedNs);
          return reply(id, { now_ns: 0, t: elapsedNs() });
        }
        advanceWaiter = { id, until: grantedNs, out };
        schedule();
        return undefined;
      }
      case 'adc':
        adcRaw[req.channel] = adcBase[req.channel] = req.raw & 0xfff;
        adcNoise[req.channel] = Math.max(0, req.noise ?? 0);
        return reply(id, {});
      case 'encoder':
        encoderMode = req.mode ?? encoderMode;
        lostEvery = req.lost_every ?? 0;
        extraPerStep = req.extra_per_step ?? 0;
        return reply(id, {});
      case 'pin': {
        const pin = chip.rp2040.gpio[req.pin];
        pin.setInputValue(!!req.value);
        for (const pio of chip.rp2040.pio) pio.kick();
        return reply(id, {});
      }
      case 'bootsel':
        bootsel = !!req.pressed;
        if (chip) chip.rp2040.qspi[1].setInputValue(!bootsel);
        return reply(id, {});
      case 'cut_at_step':
        cutAtStep = req.step;
        return reply(id, {});
      case 'reset_pins':
        Object.assign(pins, makePinState());
        return reply(id, {});
      case 'power':
        if (req.on && !powered) {
          resets.power_on++;
          powerOn();
          setMode(mode);
          schedule();
        } else if (!req.on && powered) {
          powerOff();
        }
        return reply(id, status());
      case 'reset':
        reset('forced', 0, new Uint32Array(8));
        setMode(mode);
        schedule();
        return reply(id, status());
      case 'save':
        saveFlash();
        return reply(id, {});
      case 'quit':
        reply(id, {});
        return shutdown();
      default:
        return reply(id, { error: `unknown command ${cmd}` });
    }
  } catch (e) {
    return reply(id, { error: String(e && e.stack ? e.stack : e) });
  }
}

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  try {
    saveFlash();
  } catch (e) {
    log(`could not save the flash: ${e}`);
  }
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

powerOn();
setMode(mode);
emit({ event: 'ready', ...status() });
schedule();
