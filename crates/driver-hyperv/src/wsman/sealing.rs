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

/// Unframes and unseals a message.
pub fn unseal<C: Sspi>(ctx: &mut C, body: &[u8]) -> Result<Vec<u8>, SealError> {
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
    let end_marker = b"--Encrypted Boundary--";
    let end = body
        .windows(end_marker.len())
        .rposition(|w| w == end_marker)
        .filter(|&e| e >= start)
        .ok_or(SealError::Framing("no closing boundary"))?;
    let part = &body[start..end];
    if part.len() < 4 {
        return Err(SealError::Framing("short encrypted part"));
    }
    let sig_len = u32::from_le_bytes([part[0], part[1], part[2], part[3]]) as usize;
    if part.len() < 4 + sig_len {
        return Err(SealError::Framing("signature longer than the part"));
    }
    let mut signature = part[4..4 + sig_len].to_vec();
    let mut data = part[4 + sig_len..].to_vec();
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
