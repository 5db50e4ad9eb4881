//! COM1 console (16550 UART at I/O port 0x3F8) and the `log` backend with levels.
//!
//! Lines look like `[    1.234567] INFO  message` (seconds since boot, once the clock is
//! calibrated; zeros before). The exception path writes through [`emergency`], which takes no
//! lock, so a fault inside the logger still gets reported.

use core::fmt::{self, Write};

use crate::arch::port;

const COM1: u16 = 0x3f8;

/// A 16550-compatible UART at an I/O base (register layout: PC16550D datasheet, table 2).
#[derive(Clone, Copy)]
pub struct Uart {
    base: u16,
    /// Port I/O with the instructions even when a GHCB session exists (the loopback stub's
    /// own transport to `snp-emu`, used from inside an exit).
    raw: bool,
}

impl Uart {
    /// The UART at `base`. Nothing is touched until [`Uart::init`].
    pub const fn new(base: u16) -> Self {
        Self { base, raw: false }
    }

    /// The UART at `base`, driven with the port instructions, never through the platform HAL:
    /// for the loopback-GHCB stub, which plays the host and runs inside an exit.
    #[cfg(feature = "loopback-ghcb")]
    pub const fn raw(base: u16) -> Self {
        Self { base, raw: true }
    }

    fn outb(&self, port: u16, value: u8) {
        if self.raw {
            port::raw_outb(port, value)
        } else {
            port::outb(port, value)
        }
    }

    fn inb(&self, port: u16) -> u8 {
        if self.raw {
            port::raw_inb(port)
        } else {
            port::inb(port)
        }
    }

    /// 115200 8N1, FIFOs on, interrupts off.
    pub fn init(&self) {
        let b = self.base;
        self.outb(b + 1, 0x00); // IER: no interrupts
        self.outb(b + 3, 0x80); // LCR: DLAB
        self.outb(b, 0x01); // divisor 1 = 115200
        self.outb(b + 1, 0x00);
        self.outb(b + 3, 0x03); // 8N1
        self.outb(b + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        self.outb(b + 4, 0x03); // DTR | RTS
    }

    /// Writes one byte, waiting for the transmit holding register.
    pub fn write_byte(&self, byte: u8) {
        let mut spins = 0u32;
        while self.inb(self.base + 5) & 0x20 == 0 && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        self.outb(self.base, byte);
    }

    /// Reads one byte if one is waiting.
    #[cfg(feature = "emulated-attestation")]
    pub fn try_read_byte(&self) -> Option<u8> {
        if self.inb(self.base + 5) & 0x01 != 0 {
            Some(self.inb(self.base))
        } else {
            None
        }
    }

    /// Writes all bytes.
    #[cfg(feature = "emulated-attestation")]
    pub fn write_all(&self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

static CONSOLE: spin::Mutex<Console> = spin::Mutex::new(Console {
    uart: Uart::new(COM1),
    held: None,
});

/// Bytes kept while the console is held ([`hold`]); what does not fit is counted, not kept.
const HELD_CAPACITY: usize = 16 * 1024;

/// Console output while the UART cannot be reached (SEV-SNP between the kernel's own IDT and
/// the GHCB session: a bare `out` would raise a #VC only the session could answer).
struct Held {
    bytes: [u8; HELD_CAPACITY],
    len: usize,
    dropped: usize,
}

/// COM1, or the buffer that stands in for it while held.
struct Console {
    uart: Uart,
    held: Option<Held>,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match &mut self.held {
            None => self.uart.write_str(s),
            Some(h) => {
                let room = HELD_CAPACITY - h.len;
                let n = s.len().min(room);
                if let (Some(dst), Some(src)) =
                    (h.bytes.get_mut(h.len..h.len + n), s.as_bytes().get(..n))
                {
                    dst.copy_from_slice(src);
                    h.len += n;
                }
                h.dropped += s.len() - n;
                Ok(())
            }
        }
    }
}

/// Initialises COM1.
pub fn init() {
    CONSOLE.lock().uart.init();
}

/// Holds console output in memory instead of writing COM1 (SEV-SNP: from the kernel's own IDT
/// until the GHCB session, see `boot::early_platform`). [`release`] writes it out.
pub fn hold() {
    let mut c = CONSOLE.lock();
    if c.held.is_none() {
        c.held = Some(Held {
            bytes: [0; HELD_CAPACITY],
            len: 0,
            dropped: 0,
        });
    }
}

/// Writes what was held to COM1 (through the platform HAL, the GHCB once a session exists)
/// and writes directly from then on.
pub fn release() {
    let mut c = CONSOLE.lock();
    if let Some(h) = c.held.take() {
        let mut uart = c.uart;
        let text = h.bytes.get(..h.len).unwrap_or_default();
        for chunk in text.utf8_chunks() {
            let _ = uart.write_str(chunk.valid());
        }
        if h.dropped > 0 {
            let _ = writeln!(uart, "ckms: console: {} held bytes dropped", h.dropped);
        }
    }
}

/// Prints to the console (no level, no prefix). Used for the lines tests wait for.
pub fn print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Writes to COM1 without taking the console lock: for exception and panic reports only.
pub fn emergency(args: fmt::Arguments<'_>) {
    let _ = Uart::new(COM1).write_fmt(args);
}

/// `println!` to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = crate::time::Instant::now().micros_since_boot();
        let mut c = CONSOLE.lock();
        let _ = writeln!(
            c,
            "[{:5}.{:06}] {:5} {}",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger at `level`.
pub fn init_logger(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
