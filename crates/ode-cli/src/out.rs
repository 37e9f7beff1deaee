//! Standard output that a reader closing it ends quietly: `ode solve … | head` stops `ode` as it
//! stops other Unix tools, where `println!` would panic on the broken pipe.

use std::fmt::Arguments;
use std::io::{self, ErrorKind, Write};

/// The exit status of a process that a closed pipe stopped (128 + SIGPIPE), as shells show it.
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes `args` to standard output. When the reader has gone, exits with
/// [`BROKEN_PIPE_STATUS`] and no message; on any other write error (a full disk), names it and
/// exits with status 1.
pub fn write(args: Arguments<'_>) {
    if let Err(e) = Stdout.write_fmt(args) {
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Standard output as an [`io::Write`] (for writers such as `csv::Writer`) that exits with
/// [`BROKEN_PIPE_STATUS`] and no message when the reader has gone; other errors are returned.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().write(buf).or_else(quit_if_reader_gone)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush().or_else(quit_if_reader_gone)
    }
}

/// Exits quietly on a broken pipe; passes any other error on.
fn quit_if_reader_gone<T>(e: io::Error) -> io::Result<T> {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(BROKEN_PIPE_STATUS);
    }
    Err(e)
}

/// `println!` through [`write`].
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
