//! WebSocket framing done by hand, for the two places in the bench where a library's cost per
//! frame would be the thing measured: the chatroom bench's lean members (10,000 sockets on one
//! thread, reading a million frames a second) and the raw relay. Whole frames only (FIN set, no
//! fragments, no extensions), as both peers here send them.

use std::ops::Range;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

pub const BINARY: u8 = 2;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// The most an opening request or answer may take.
const MAX_HEAD: usize = 8 * 1024;

/// Appends `payload` as one frame; a client's frames are masked with `mask`.
pub fn put(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
    }
}

/// A whole frame at the start of `buf`: its opcode, where its payload is (unmasked in place),
/// and how many bytes it takes. `None` while it is incomplete; an error for a frame this code
/// does not read (a fragment, or one longer than `max`).
pub fn take(buf: &mut [u8], max: usize) -> anyhow::Result<Option<(u8, Range<usize>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] & 0x80 == 0 {
        bail!("a fragmented WebSocket frame");
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().context("frame length")?),
            10,
        ),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let len = match usize::try_from(len) {
        Ok(n) if n <= max => n,
        _ => bail!("a WebSocket frame of {len} bytes"),
    };
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        at += 4;
        Some([buf[at - 4], buf[at - 3], buf[at - 2], buf[at - 1]])
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    if let Some(key) = mask {
        for (i, b) in buf[at..at + len].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(Some((opcode, at..at + len, at + len)))
}

/// Reads until the end of an HTTP head; answers the head and the bytes read past it.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            let head = String::from_utf8(buf).context("an HTTP head that is not text")?;
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            bail!("an HTTP head over {MAX_HEAD} bytes");
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the connection closed during the WebSocket handshake");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The client's side of the opening handshake for `url` (`ws://host:port/path`); answers the
/// bytes the server sent past its answer (frames already).
pub async fn connect(stream: &mut TcpStream, url: &str) -> anyhow::Result<Vec<u8>> {
    let rest = url
        .strip_prefix("ws://")
        .context("the raw WebSocket client speaks ws:// only")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let key = generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let (head, rest) = read_head(stream).await?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("101") {
        bail!("the server refused the WebSocket upgrade: {status}");
    }
    if header(&head, "sec-websocket-accept") != Some(derive_accept_key(key.as_bytes()).as_str()) {
        bail!("the server's Sec-WebSocket-Accept does not match the key");
    }
    Ok(rest)
}

/// The server's side of the opening handshake; answers the bytes the client sent past its
/// request.
pub async fn accept(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let (head, rest) = read_head(stream).await?;
    let key = header(&head, "sec-websocket-key").context("no Sec-WebSocket-Key")?;
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = header(&head, "sec-websocket-protocol").and_then(|p| p.split(',').next()) {
        answer.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", p.trim()));
    }
    answer.push_str("\r\n");
    stream.write_all(answer.as_bytes()).await?;
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_masked_and_not() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            for mask in [None, Some([1u8, 2, 3, 250])] {
                let mut bytes = Vec::new();
                put(&mut bytes, BINARY, &payload, mask);
                // Any prefix is incomplete, not an error.
                let mut prefix = bytes[..bytes.len() - 1].to_vec();
                assert!(take(&mut prefix, 1 << 20).unwrap().is_none());
                bytes.extend_from_slice(b"next");
                let (op, at, used) = take(&mut bytes, 1 << 20).unwrap().unwrap();
                assert_eq!(op, BINARY);
                assert_eq!(&bytes[at], &payload[..]);
                assert_eq!(&bytes[used..], b"next");
            }
        }
    }

    #[test]
    fn fragments_and_oversized_frames_are_refused() {
        let mut bytes = Vec::new();
        put(&mut bytes, BINARY, &[0; 300], None);
        assert!(take(&mut bytes.clone(), 299).is_err());
        bytes[0] &= 0x7f;
        assert!(take(&mut bytes, 1 << 20).is_err());
    }
}
