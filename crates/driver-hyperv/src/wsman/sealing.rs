//! Message sealing as WinRM frames it over HTTP (`multipart/encrypted`, MS-WSMV 2.2.9.1), for
//! both ends, with an NTLM or a Kerberos context.
//!
//! ```text
//! --Encrypted Boundary\r\n
//! \tContent-Type: <protocol>\r\n
//! \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<plain length>\r\n
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/octet-stream\r\n
//! <u32 LE header length><header><ciphertext>--Encrypted Boundary--\r\n
//! ```
//!
//! The protocol is `application/HTTP-SPNEGO-session-encrypted` for the `Negotiate` scheme and
//! `application/HTTP-Kerberos-session-encrypted` for the `Kerberos` scheme. The header is what
//! SSPI's `EncryptMessage` puts in its token buffer: NTLM's 16-byte signature, or for Kerberos
//! (RFC 4121 wrap token, AES, rotated as Windows does) the token header, the encrypted confounder,
//! filler and header copy and the checksum, whose size the context tells
//! (`QueryContextAttributes(SIZES).cbSecurityTrailer`, 60 bytes for AES with EC=0). With AES the
//! ciphertext is as long as the plain text, so `Length` is the plain length (RC4 would add padding
//! and count it; it is not offered).

use sspi::{EncryptionFlags, SecurityBufferRef, Sspi};

/// The protocol for the `Negotiate` scheme (NTLM, or Kerberos negotiated).
pub const PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";
/// The protocol for the `Kerberos` scheme.
pub const PROTOCOL_KERBEROS: &str = "application/HTTP-Kerberos-session-encrypted";
/// The HTTP `Content-Type` of a sealed message (SPNEGO protocol).
pub const CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";
/// The HTTP `Content-Type` of a sealed message (Kerberos protocol).
pub const CONTENT_TYPE_KERBEROS: &str = "multipart/encrypted;protocol=\"application/HTTP-Kerberos-session-encrypted\";boundary=\"Encrypted Boundary\"";
const BOUNDARY: &[u8] = b"--Encrypted Boundary";

/// The `Content-Type` for a protocol.
pub fn content_type(protocol: &str) -> &'static str {
    if protocol == PROTOCOL_KERBEROS {
        CONTENT_TYPE_KERBEROS
    } else {
        CONTENT_TYPE
    }
}

/// The protocol named in a `Content-Type` header, if it is a sealed message.
pub fn protocol_of(content_type: &str) -> Option<&'static str> {
    if !content_type.starts_with("multipart/encrypted") {
        return None;
    }
    if content_type.contains(PROTOCOL_KERBEROS) {
        Some(PROTOCOL_KERBEROS)
    } else if content_type.contains(PROTOCOL) {
        Some(PROTOCOL)
    } else {
        None
    }
}

/// Sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The security context refused.
    #[error("message sealing failed: {0}")]
    Sspi(String),
    /// The multipart body is not what WinRM sends.
    #[error("malformed encrypted message: {0}")]
    Framing(&'static str),
    /// The decrypted length differs from `OriginalContent`'s.
    #[error("decrypted {got} bytes, the header announced {want}")]
    Length {
        /// Announced.
        want: usize,
        /// Got.
        got: usize,
    },
}

/// Seals a SOAP message with the context and frames it for `protocol`.
pub fn seal<C: Sspi>(ctx: &mut C, protocol: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let trailer = ctx
        .query_context_sizes()
        .map_err(|e| SealError::Sspi(e.to_string()))?
        .security_trailer as usize;
    let mut signature = vec![0u8; trailer];
    let mut data = plain.to_vec();
    let (sig_len, data_len) = {
        let mut bufs = [
            SecurityBufferRef::token_buf(&mut signature),
            SecurityBufferRef::data_buf(&mut data),
        ];
        ctx.encrypt_message(EncryptionFlags::empty(), &mut bufs)
            .map_err(|e| SealError::Sspi(e.to_string()))?;
        (bufs[0].data().len(), bufs[1].data().len())
    };
    signature.truncate(sig_len);
    data.truncate(data_len);
    let mut out = Vec::with_capacity(plain.len() + 256);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: ");
    out.extend_from_slice(protocol.as_bytes());
    out.extend_from_slice(
        b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
    );
    out.extend_from_slice(plain.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: application/octet-stream\r\n");
    out.extend_from_slice(&(signature.len() as u32).to_le_bytes());
    out.extend_from_slice(&signature);
    out.extend_from_slice(&data);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"--\r\n");
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The length of the header (NTLM signature or Kerberos wrap token) a sealed message announces.
pub fn header_len(body: &[u8]) -> Option<usize> {
    let octet = b"\tContent-Type: application/octet-stream\r\n";
    let start = find(body, octet, 0)? + octet.len();
    let b = body.get(start..start + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// The parts of a sealed message, as [`unframe`] finds them.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The plain length `OriginalContent` announces.
    pub want: usize,
    /// The header (NTLM signature or Kerberos wrap token).
    pub header: &'a [u8],
    /// The ciphertext.
    pub data: &'a [u8],
}

/// Splits a sealed message into its announced length, header and ciphertext, without any
/// cryptography (so that it can be tested and fuzzed alone).
///
/// The final boundary is accepted with and without its trailing `--` (`--Encrypted Boundary--`
/// or `--Encrypted Boundary`), each optionally followed by CRLF: WinRM closes with `--`, while
/// pywinrm sent the bare boundary for years and reads both (`winrm/encryption.py`,
/// `_decrypt_response`: "sometimes the last Encrypted Boundary has -- before the newline"), and
/// pypsrp splits on the boundary line and strips an optional closing `--`
/// (`pypsrp/encryption.py`, `unwrap_message`). The closing boundary must END the body: bytes of
/// the ciphertext that happen to spell a boundary are never taken for it.
pub fn unframe(body: &[u8]) -> Result<Frame<'_>, SealError> {
    let len_key = b"Length=";
    let lp = find(body, len_key, 0).ok_or(SealError::Framing("no OriginalContent length"))?
        + len_key.len();
    let le = find(body, b"\r\n", lp).ok_or(SealError::Framing("unterminated OriginalContent"))?;
    let want: usize = std::str::from_utf8(&body[lp..le])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(SealError::Framing("bad OriginalContent length"))?;
    let octet = b"\tContent-Type: application/octet-stream\r\n";
    let start =
        find(body, octet, le).ok_or(SealError::Framing("no octet-stream part"))? + octet.len();
    let tail = body.strip_suffix(b"\r\n").unwrap_or(body);
    let end = if let Some(t) = tail.strip_suffix(b"--Encrypted Boundary--") {
        t.len()
    } else if let Some(t) = tail.strip_suffix(BOUNDARY) {
        t.len()
    } else {
        return Err(SealError::Framing("no closing boundary"));
    };
    if end < start {
        return Err(SealError::Framing("no closing boundary"));
    }
    let part = &body[start..end];
    if part.len() < 4 {
        return Err(SealError::Framing("short encrypted part"));
    }
    let sig_len = u32::from_le_bytes([part[0], part[1], part[2], part[3]]) as usize;
    if part.len() - 4 < sig_len {
        return Err(SealError::Framing("signature longer than the part"));
    }
    Ok(Frame {
        want,
        header: &part[4..4 + sig_len],
        data: &part[4 + sig_len..],
    })
}

/// Unframes ([`unframe`]) and unseals a message.
pub fn unseal<C: Sspi>(ctx: &mut C, body: &[u8]) -> Result<Vec<u8>, SealError> {
    let frame = unframe(body)?;
    let want = frame.want;
    let mut signature = frame.header.to_vec();
    let mut data = frame.data.to_vec();
    let data = {
        let mut bufs = [
            SecurityBufferRef::data_buf(&mut data),
            SecurityBufferRef::token_buf(&mut signature),
        ];
        ctx.decrypt_message(&mut bufs)
            .map_err(|e| SealError::Sspi(e.to_string()))?;
        bufs[0].data().to_vec()
    };
    if data.len() != want {
        return Err(SealError::Length {
            want,
            got: data.len(),
        });
    }
    Ok(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A sealed message as `seal` frames it, with `close` as its end.
    fn framed(header: &[u8], data: &[u8], close: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=5\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n");
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header);
        out.extend_from_slice(data);
        out.extend_from_slice(close);
        out
    }

    #[test]
    fn the_final_boundary_is_read_with_and_without_its_trailing_dashes() {
        for close in [
            &b"--Encrypted Boundary--\r\n"[..],
            b"--Encrypted Boundary--",
            b"--Encrypted Boundary\r\n",
            b"--Encrypted Boundary",
        ] {
            let body = framed(b"SIGNATURE-16-BYT", b"ciphr", close);
            let f = unframe(&body).unwrap_or_else(|e| panic!("{close:?}: {e}"));
            assert_eq!(f.want, 5);
            assert_eq!(f.header, b"SIGNATURE-16-BYT");
            assert_eq!(f.data, b"ciphr", "{close:?}");
        }
    }

    #[test]
    fn a_boundary_spelled_inside_the_ciphertext_does_not_end_it() {
        let data = b"ab--Encrypted Boundary--\r\ncd";
        let body = framed(b"0123456789abcdef", data, b"--Encrypted Boundary--\r\n");
        assert_eq!(unframe(&body).unwrap().data, data);
        let body = framed(b"0123456789abcdef", data, b"--Encrypted Boundary\r\n");
        assert_eq!(unframe(&body).unwrap().data, data);
    }

    #[test]
    fn a_message_without_a_closing_boundary_or_with_a_short_part_is_refused() {
        let body = framed(b"0123456789abcdef", b"ciphr", b"");
        assert!(matches!(unframe(&body), Err(SealError::Framing(_))));
        let mut body = framed(b"", b"", b"--Encrypted Boundary--\r\n");
        // a header length that runs past the part
        let at = body.len() - b"--Encrypted Boundary--\r\n".len() - 4;
        body[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(unframe(&body), Err(SealError::Framing(_))));
        assert!(unframe(b"").is_err());
    }
}
