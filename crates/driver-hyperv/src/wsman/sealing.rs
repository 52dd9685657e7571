//! NTLM message sealing as WinRM frames it over HTTP (`multipart/encrypted`), for both ends.
//!
//! ```text
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n
//! \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<plain length>\r\n
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/octet-stream\r\n
//! <u32 LE signature length><signature><ciphertext>--Encrypted Boundary--\r\n
//! ```

use sspi::{EncryptionFlags, Ntlm, SecurityBufferRef, Sspi};

/// The protocol named in the content type.
pub const PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";
/// The HTTP `Content-Type` of a sealed message.
pub const CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";
const BOUNDARY: &[u8] = b"--Encrypted Boundary";
const NTLM_SIGNATURE_LEN: usize = 16;

/// Sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The security context refused.
    #[error("NTLM sealing failed: {0}")]
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

/// Seals a SOAP message with the context and frames it.
pub fn seal(ctx: &mut Ntlm, plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut signature = vec![0u8; NTLM_SIGNATURE_LEN];
    let mut data = plain.to_vec();
    {
        let mut bufs = [
            SecurityBufferRef::token_buf(&mut signature),
            SecurityBufferRef::data_buf(&mut data),
        ];
        ctx.encrypt_message(EncryptionFlags::empty(), &mut bufs)
            .map_err(|e| SealError::Sspi(e.to_string()))?;
    }
    let mut out = Vec::with_capacity(plain.len() + 256);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: ");
    out.extend_from_slice(PROTOCOL.as_bytes());
    out.extend_from_slice(
        b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
    );
    out.extend_from_slice(plain.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: application/octet-stream\r\n");
    out.extend_from_slice(&(NTLM_SIGNATURE_LEN as u32).to_le_bytes());
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

/// Unframes and unseals a message.
pub fn unseal(ctx: &mut Ntlm, body: &[u8]) -> Result<Vec<u8>, SealError> {
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
