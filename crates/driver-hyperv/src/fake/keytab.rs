//! Reads an MIT keytab (format 0x0502, what `kadmin ktadd` writes) so the fake can accept
//! Kerberos tickets for its `HTTP/<host>` principals with the KDC's real service keys.
//!
//! ```text
//! 0x05 0x02, then entries: i32 size (negative: a hole of that size), then
//!   u16 components, counted realm, counted components..., u32 name type, u32 timestamp,
//!   u8 kvno, u16 enctype, counted key, [u32 kvno]
//! ```
//! (counted = u16 length + bytes, all big endian.)

/// One key of a keytab.
#[derive(Clone, PartialEq, Eq)]
pub struct KeytabEntry {
    /// The realm.
    pub realm: String,
    /// The principal's components (`["HTTP", "hv1.example"]`).
    pub components: Vec<String>,
    /// The key version.
    pub kvno: u32,
    /// The encryption type (18 = aes256-cts-hmac-sha1-96, 17 = aes128).
    pub enctype: u16,
    /// The key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for KeytabEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeytabEntry")
            .field("principal", &self.principal())
            .field("kvno", &self.kvno)
            .field("enctype", &self.enctype)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl KeytabEntry {
    /// `HTTP/hv1.example@REALM`.
    pub fn principal(&self) -> String {
        format!("{}@{}", self.components.join("/"), self.realm)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err("keytab truncated".into());
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn counted(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.counted()?).map_err(|_| "keytab name is not UTF-8".to_owned())
    }
}

/// Parses a keytab's bytes.
pub fn parse(bytes: &[u8]) -> Result<Vec<KeytabEntry>, String> {
    if bytes.len() < 2 || bytes[0] != 0x05 || bytes[1] != 0x02 {
        return Err("not a version 0x0502 keytab".into());
    }
    let mut r = Reader { b: bytes, at: 2 };
    let mut out = Vec::new();
    while r.at < bytes.len() {
        let size = r.u32()? as i32;
        if size < 0 {
            r.take(size.unsigned_abs() as usize)?;
            continue;
        }
        let body = r.take(size as usize)?;
        let mut e = Reader { b: body, at: 0 };
        let n = e.u16()?;
        let realm = e.string()?;
        let mut components = Vec::new();
        for _ in 0..n {
            components.push(e.string()?);
        }
        let _name_type = e.u32()?;
        let _timestamp = e.u32()?;
        let kvno8 = e.take(1)?[0];
        let enctype = e.u16()?;
        let key = e.counted()?;
        let kvno = if body.len() - e.at >= 4 {
            e.u32()?
        } else {
            u32::from(kvno8)
        };
        out.push(KeytabEntry {
            realm,
            components,
            kvno,
            enctype,
            key,
        });
    }
    Ok(out)
}

/// The most a keytab the fake reads may hold (the test KDC's holds a few keys, under 1 KiB).
pub const MAX_KEYTAB_BYTES: u64 = 1 << 20;

/// Reads a keytab file: a regular file (a FIFO, a device or a folder is refused by what it is,
/// before anything is read) of at most [`MAX_KEYTAB_BYTES`], through the one bounded read
/// (`vmove_driver::files::read_regular_file_bounded`).
pub fn read(path: &std::path::Path) -> Result<Vec<KeytabEntry>, String> {
    let (_, bytes) = vmove_driver::files::read_regular_file_bounded(path, MAX_KEYTAB_BYTES)
        .map_err(|e| e.describe("keytab", path, MAX_KEYTAB_BYTES, ""))?;
    parse(&bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `read` on another thread, given up on after 5 s (a FIFO waited forever for a writer).
    #[cfg(unix)]
    fn read_error_within_5_s(path: &std::path::Path) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read(&p).map(|e| e.len()));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(Err(e)) => e,
            Ok(Ok(n)) => format!("read {n} entries, not refused"),
            Err(_) => "no answer within 5 s (hangs)".into(),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_keytab_that_is_a_fifo_a_folder_or_too_large_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.keytab");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let folder = dir.path().join("folder.keytab");
        std::fs::create_dir(&folder).unwrap();
        for (path, kind) in [(&fifo, "a FIFO (named pipe)"), (&folder, "a folder")] {
            let e = read_error_within_5_s(path);
            assert_eq!(
                e,
                format!(
                    "the keytab `{}` is not a regular file but {kind}",
                    path.display()
                )
            );
        }
        // One byte over the limit: refused on its size, before it is read (or parsed).
        let big = dir.path().join("big.keytab");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_KEYTAB_BYTES + 1).unwrap();
        let e = read_error_within_5_s(&big);
        assert_eq!(
            e,
            format!(
                "the keytab `{}` is larger than {MAX_KEYTAB_BYTES} bytes",
                big.display()
            )
        );
    }

    #[test]
    fn parses_an_mit_keytab_entry_and_skips_holes() {
        let mut entry = Vec::new();
        entry.extend_from_slice(&2u16.to_be_bytes());
        for s in ["VMOVE.TEST", "HTTP", "hv1.vmove.test"] {
            entry.extend_from_slice(&(s.len() as u16).to_be_bytes());
            entry.extend_from_slice(s.as_bytes());
        }
        entry.extend_from_slice(&1u32.to_be_bytes()); // KRB5_NT_PRINCIPAL
        entry.extend_from_slice(&0u32.to_be_bytes());
        entry.push(2);
        entry.extend_from_slice(&18u16.to_be_bytes());
        entry.extend_from_slice(&32u16.to_be_bytes());
        entry.extend_from_slice(&[7u8; 32]);
        entry.extend_from_slice(&2u32.to_be_bytes());
        let mut kt = vec![5, 2];
        kt.extend_from_slice(&(-3i32).to_be_bytes());
        kt.extend_from_slice(&[0, 0, 0]);
        kt.extend_from_slice(&(entry.len() as u32).to_be_bytes());
        kt.extend_from_slice(&entry);
        let es = parse(&kt).unwrap();
        assert_eq!(es.len(), 1);
        assert_eq!(es[0].principal(), "HTTP/hv1.vmove.test@VMOVE.TEST");
        assert_eq!((es[0].kvno, es[0].enctype, es[0].key.len()), (2, 18, 32));
        assert!(!format!("{:?}", es[0]).contains("7, 7"));
        assert!(parse(&kt[..kt.len() - 5]).is_err());
        assert!(parse(b"\x05\x01").is_err());
    }
}
