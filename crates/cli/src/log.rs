//! Where the log goes besides stderr, and what every log line is cleaned of.

use anyhow::{Context, Result};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing_subscriber::EnvFilter;

/// The level `VMOVE_LOG` (or `RUST_LOG`) asks for; warnings when neither is set or the value is
/// not a filter (said once).
pub fn filter_from_env() -> EnvFilter {
    let (var, value) = match (std::env::var("VMOVE_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) => ("VMOVE_LOG", Some(v)),
        (_, Ok(v)) => ("RUST_LOG", Some(v)),
        _ => ("", None),
    };
    match value.filter(|v| !v.trim().is_empty()) {
        Some(v) => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            errln!("vmove: warning: {var}={v:?} is not a log filter ({e}); logging warnings");
            EnvFilter::new("warn")
        }),
        None => EnvFilter::new("warn"),
    }
}

/// Opens `--log-file` for appending, created readable by its owner only (a log names hosts and
/// VMs). Refused with the path named when it cannot be opened.
pub fn open_file(path: &Path) -> Result<Arc<Mutex<std::fs::File>>> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    // A FIFO, a device or a folder is refused before it is opened (opening a FIFO waits for a
    // reader: vmove hung before anything ran), and what was opened is looked at again.
    let refuse = |meta: &std::io::Result<std::fs::Metadata>| {
        crate::output::refuse_unless_regular("--log-file", "log file", path, meta)
    };
    refuse(&std::fs::metadata(path))?;
    let f = opts
        .open(path)
        .with_context(|| format!("cannot open the log file `{}`", path.display()))?;
    refuse(&f.metadata())?;
    Ok(Arc::new(Mutex::new(f)))
}

/// The log file, shared by every line's writer.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Mutex<std::fs::File>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A log that cannot be written is not worth stopping a run for.
        let _ = f.write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.flush();
        Ok(())
    }
}

/// Hides URIs' user information (`qemu+tcp://admin:pw@host` -> `qemu+tcp://***@host`) in what
/// it writes. tracing's formatter writes each line in one call, so a URI is never split.
#[derive(Debug)]
pub struct Redacting<W: Write>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(vmove_driver::redact_uris(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_never_carries_a_uris_password() {
        let mut out = Redacting(Vec::new());
        out.write_all(b"WARN cannot reach qemu+tcp://admin:s3cr3t@10.0.0.1/system: refused\n")
            .unwrap();
        let line = String::from_utf8(out.0).unwrap();
        assert!(!line.contains("s3cr3t"), "{line}");
        assert!(line.contains("10.0.0.1/system: refused"), "{line}");
    }
}
