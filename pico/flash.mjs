// The Pico's QSPI flash path for rp2040js 1.4.1: IO_QSPI registers, a
// standard-SPI SSI and a small SPI NOR chip (W25Q16-like) behind it.
//
// Stock rp2040js serves XIP reads straight from its flash array but drops
// every erase and program: its SSI is a stub and IO_QSPI is unimplemented
// (reads 0xffffffff, which the bootrom's flash routines take as "aborted").
// These three replace them, so littlefs can format and write as on silicon.
// Written from the RP2040 datasheet (sections 2.8 bootrom flash functions,
// 2.19 IO_QSPI, 4.10 SSI) and the W25Q16JV datasheet; no code copied.

const IO_QSPI_SS_CTRL = 0x0c; // GPIO_QSPI_SS_CTRL: OUTOVER in bits 8-9
const OUTOVER_SHIFT = 8;
const OUTOVER_LOW = 2;
const OUTOVER_HIGH = 3;

// SSI registers (offsets)
const CTRLR0 = 0x00;
const SSIENR = 0x08;
const TXFLR = 0x20;
const RXFLR = 0x24;
const SR = 0x28;
const IDR = 0x58;
const VERSION_ID = 0x5c;
const DR0 = 0x60;
const SR_TFNF = 1 << 1;
const SR_TFE = 1 << 2;
const SR_RFNE = 1 << 3;

// NOR commands
const WRITE_ENABLE = 0x06;
const WRITE_DISABLE = 0x04;
const READ_STATUS1 = 0x05;
const READ_STATUS2 = 0x35;
const WRITE_STATUS1 = 0x01;
const WRITE_STATUS2 = 0x31;
const READ_DATA = 0x03;
const FAST_READ = 0x0b;
const PAGE_PROGRAM = 0x02;
const SECTOR_ERASE_4K = 0x20;
const BLOCK_ERASE_32K = 0x52;
const BLOCK_ERASE_64K = 0xd8;
const CHIP_ERASE = 0xc7;
const CHIP_ERASE_ALT = 0x60;
const JEDEC_ID = 0x9f;
const UNIQUE_ID = 0x4b;

export const FLASH_SIZE = 2 * 1024 * 1024;

/** A SPI NOR chip operating on `memory` (the emulator's flash array). */
export class NorFlash {
  constructor(memory, uniqueId) {
    this.memory = memory;
    this.uniqueId = uniqueId; // 8 bytes
    this.writeEnabled = false;
    this.status2 = 0x02; // QE set: boot2 leaves the status registers alone
    this.programs = 0;
    this.erases = 0;
    this.deselect();
  }

  deselect() {
    // CS high: an erase executes now; everything else is already done.
    const { cmd, index, addr } = this;
    if (index >= 4 && this.writeEnabled) {
      const size = { [SECTOR_ERASE_4K]: 4096, [BLOCK_ERASE_32K]: 32768, [BLOCK_ERASE_64K]: 65536 }[cmd];
      if (size) {
        const start = (addr & (FLASH_SIZE - 1)) & ~(size - 1);
        this.memory.fill(0xff, start, start + size);
        this.erases++;
        this.writeEnabled = false;
      }
    }
    if (index >= 1 && (cmd === CHIP_ERASE || cmd === CHIP_ERASE_ALT) && this.writeEnabled) {
      this.memory.fill(0xff, 0, FLASH_SIZE);
      this.erases++;
      this.writeEnabled = false;
    }
    if (cmd === PAGE_PROGRAM && index > 4) {
      this.writeEnabled = false;
      this.programs++;
    }
    this.cmd = -1;
    this.index = 0;
    this.addr = 0;
  }

  /** One byte both ways while selected. */
  transfer(byte) {
    const i = this.index++;
    if (i === 0) {
      this.cmd = byte;
      if (byte === WRITE_ENABLE) this.writeEnabled = true;
      if (byte === WRITE_DISABLE) this.writeEnabled = false;
      return 0xff;
    }
    const cmd = this.cmd;
    switch (cmd) {
      case READ_STATUS1:
        return this.writeEnabled ? 0x02 : 0x00; // never busy: operations are instant
      case READ_STATUS2:
        return this.status2;
      case WRITE_STATUS1:
      case WRITE_STATUS2:
        return 0xff;
      case JEDEC_ID:
        return [0xef, 0x40, 0x15][i - 1] ?? 0xff; // Winbond W25Q16, 2 MiB
      case UNIQUE_ID:
        return i >= 5 && i < 13 ? this.uniqueId[i - 5] : 0xff; // 4 dummy bytes first
      case READ_DATA:
      case FAST_READ:
      case PAGE_PROGRAM:
      case SECTOR_ERASE_4K:
      case BLOCK_ERASE_32K:
      case BLOCK_ERASE_64K: {
        if (i <= 3) {
          this.addr = (this.addr << 8) | byte;
          return 0xff;
        }
        if (cmd === READ_DATA || (cmd === FAST_READ && i > 4)) {
          const offset = this.addr & (FLASH_SIZE - 1);
          this.addr++;
          return this.memory[offset];
        }
        if (cmd === PAGE_PROGRAM && this.writeEnabled) {
          // within one 256-byte page, wrapping as the chip does; bits only clear
          const page = this.addr & (FLASH_SIZE - 1) & ~0xff;
          const offset = page + ((this.addr + (i - 4)) & 0xff);
          this.memory[offset] &= byte;
        }
        return 0xff;
      }
      default:
        return 0xff;
    }
  }
}

/** IO_QSPI: registers that read back what was written; SS_CTRL is the chip select. */
export class IoQspi {
  constructor(rp2040, chip) {
    this.rp2040 = rp2040;
    this.name = 'IO_QSPI';
    this.chip = chip;
    this.regs = new Uint32Array(0x40 / 4);
    this.rawWriteValue = 0;
  }

  get forcedSelect() {
    const outover = (this.regs[IO_QSPI_SS_CTRL >> 2] >>> OUTOVER_SHIFT) & 3;
    return outover;
  }

  readUint32(offset) {
    return offset < 0x40 ? this.regs[offset >> 2] : 0;
  }

  writeUint32(offset, value) {
    if (offset >= 0x40) return;
    const before = this.forcedSelect;
    this.regs[offset >> 2] = value;
    const after = this.forcedSelect;
    if (offset === IO_QSPI_SS_CTRL && before !== after) {
      // A forced high (or back to the SSI) ends any command in progress.
      this.chip.deselect();
    }
  }

  writeUint32Atomic(offset, value, atomicType) {
    this.rawWriteValue = value;
    const current = this.readUint32(offset);
    const next =
      atomicType === 1 ? current ^ value : atomicType === 2 ? current | value : atomicType === 3 ? current & ~value : value;
    this.writeUint32(offset, next >>> 0);
  }
}

/**
 * The SSI as a standard-SPI master: every byte written to DR0 goes to the
 * chip at once and its answer waits in the RX FIFO. With chip select under
 * the SSI's own control (boot2), a command ends when the CPU has read back
 * every answer; with it forced from IO_QSPI (the bootrom), when that is
 * released. Transfers in dual/quad frame formats (XIP set-up) reach no chip.
 */
export class Ssi {
  constructor(rp2040, chip, ioQspi) {
    this.rp2040 = rp2040;
    this.name = 'SSI';
    this.chip = chip;
    this.io = ioQspi;
    this.regs = new Uint32Array(0x100 / 4);
    this.rx = [];
    this.rawWriteValue = 0;
  }

  get standardSpi() {
    return ((this.regs[CTRLR0 >> 2] >>> 21) & 3) === 0;
  }

  readUint32(offset) {
    switch (offset) {
      case TXFLR:
        return 0;
      case RXFLR:
        return this.rx.length;
      case SR:
        return SR_TFE | SR_TFNF | (this.rx.length ? SR_RFNE : 0);
      case IDR:
        return 0x51535049;
      case VERSION_ID:
        return 0x3430312a;
      case DR0: {
        const value = this.rx.length ? this.rx.shift() : 0;
        if (this.rx.length === 0 && this.io.forcedSelect === 0) {
          this.chip.deselect();
        }
        return value;
      }
      default:
        return offset < 0x100 ? this.regs[offset >> 2] : 0;
    }
  }

  writeUint32(offset, value) {
    if (offset === DR0) {
      const selected = this.io.forcedSelect === OUTOVER_LOW || this.io.forcedSelect === 0;
      if (this.standardSpi && selected && this.regs[SSIENR >> 2] & 1) {
        this.rx.push(this.chip.transfer(value & 0xff));
      } else {
        this.rx.push(0);
      }
      return;
    }
    if (offset === SSIENR && !(value & 1)) {
      this.rx.length = 0;
    }
    if (offset < 0x100) this.regs[offset >> 2] = value;
  }

  writeUint32Atomic(offset, value, atomicType) {
    this.rawWriteValue = value;
    const current = offset === DR0 ? 0 : this.readUint32(offset);
    const next =
      atomicType === 1 ? current ^ value : atomicType === 2 ? current | value : atomicType === 3 ? current & ~value : value;
    this.writeUint32(offset, next >>> 0);
  }
}

export { OUTOVER_HIGH };
