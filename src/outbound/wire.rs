//! Server-to-client WebSocket frames as the bytes that go on the wire.
//!
//! A broadcast is framed once and the same bytes are written to every subscriber's socket, so
//! fan-out costs one `write` per subscriber and nothing else (no per-socket framing or copy).

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::deflate;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const FIN: u8 = 0x80;
/// Set on the first frame of a compressed message (RFC 7692 section 6).
const RSV1: u8 = 0x40;

/// One or more complete, unmasked WebSocket frames (headers and payloads); clones share the
/// bytes, and the compressed form once it is made.
#[derive(Clone, Debug)]
pub struct WireFrame {
    bytes: Bytes,
    /// Pusher messages carried (more than one when a batch was joined into one write).
    messages: usize,
    /// The same frames for sockets that negotiated `permessage-deflate`, when they may be
    /// compressed: made on first use, once for every subscriber.
    deflated: Option<Arc<Deflated>>,
}

/// The compressed form of a frame, made once.
#[derive(Debug)]
struct Deflated {
    /// Frames with a smaller payload stay as they are.
    threshold: usize,
    bytes: OnceLock<Bytes>,
}

impl PartialEq for WireFrame {
    fn eq(&self, other: &WireFrame) -> bool {
        self.bytes == other.bytes && self.messages == other.messages
    }
}

impl Eq for WireFrame {}

impl WireFrame {
    /// A text frame carrying one Pusher JSON message.
    pub fn text(payload: &str) -> WireFrame {
        WireFrame::encode(OPCODE_TEXT, payload.as_bytes())
    }

    /// A broadcast or client event: a text frame that sockets which negotiated
    /// `permessage-deflate` get compressed when its payload is at least `compress_above` bytes.
    pub fn event(payload: &str, compress_above: Option<usize>) -> WireFrame {
        WireFrame::text(payload).compressible(compress_above)
    }

    /// The same frames, compressed for sockets that negotiated it when a payload is at least
    /// `compress_above` bytes (frames from another node get this on arrival).
    pub fn compressible(mut self, compress_above: Option<usize>) -> WireFrame {
        if let (None, Some(threshold)) = (&self.deflated, compress_above) {
            self.deflated = Some(Arc::new(Deflated {
                threshold,
                bytes: OnceLock::new(),
            }));
        }
        self
    }

    /// An empty ping, the server's liveness probe.
    pub fn ping() -> WireFrame {
        WireFrame::whole(Bytes::from_static(&[FIN | OPCODE_PING, 0]), 1)
    }

    fn whole(bytes: Bytes, messages: usize) -> WireFrame {
        WireFrame {
            bytes,
            messages,
            deflated: None,
        }
    }

    /// A close frame; the reason is cut to the 123 bytes a control frame can carry.
    pub fn close(code: u16, reason: &str) -> WireFrame {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = Vec::with_capacity(2 + end);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        WireFrame::encode(OPCODE_CLOSE, &payload)
    }

    /// The answer to a peer's close frame: its code echoed, or no code at all.
    pub fn close_reply(code: Option<u16>) -> WireFrame {
        match code {
            Some(code) => WireFrame::close(code, ""),
            None => WireFrame::encode(OPCODE_CLOSE, &[]),
        }
    }

    /// Bytes another encoder already framed (tungstenite's automatic pong and close replies).
    pub fn framed(bytes: &[u8]) -> WireFrame {
        WireFrame::whole(Bytes::copy_from_slice(bytes), 1)
    }

    /// Frames this server encoded, as they came back from another node: checked to be whole
    /// unmasked data frames, so bytes from elsewhere can never break a client's stream.
    pub fn from_wire(bytes: &[u8]) -> Option<WireFrame> {
        let mut rest = bytes;
        let mut messages = 0;
        while !rest.is_empty() {
            let (_, _, after) = split_text_frame(rest)?;
            rest = after;
            messages += 1;
        }
        (messages > 0).then(|| WireFrame::whole(Bytes::copy_from_slice(bytes), messages))
    }

    /// Several frames joined, to reach each socket in one write, in this order (compressible
    /// when each of them is).
    pub fn joined(frames: &[WireFrame]) -> WireFrame {
        let mut out = BytesMut::with_capacity(frames.iter().map(WireFrame::len).sum());
        for frame in frames {
            out.put_slice(&frame.bytes);
        }
        let threshold = frames
            .iter()
            .map(|f| f.deflated.as_ref().map(|d| d.threshold))
            .try_fold(usize::MAX, |min, t| Some(min.min(t?)));
        WireFrame::whole(out.freeze(), frames.iter().map(|f| f.messages).sum())
            .compressible(threshold)
    }

    /// The bytes to write to a socket: compressed when it negotiated `permessage-deflate`
    /// (`deflate`) and this frame may be; compressed at most once for all sockets.
    pub fn bytes_for(&self, deflate: bool) -> &Bytes {
        match (&self.deflated, deflate) {
            (Some(deflated), true) => deflated
                .bytes
                .get_or_init(|| deflate_frames(&self.bytes, deflated.threshold)),
            _ => &self.bytes,
        }
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the frame is empty (never true for an encoded frame).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Pusher messages in these bytes.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// The frame as shared bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    fn encode(opcode: u8, payload: &[u8]) -> WireFrame {
        let mut out = BytesMut::with_capacity(payload.len() + 10);
        put_frame(&mut out, FIN | opcode, payload);
        WireFrame::whole(out.freeze(), 1)
    }
}

/// Appends one frame: its first byte, the payload's length, the payload.
fn put_frame(out: &mut BytesMut, first: u8, payload: &[u8]) {
    out.put_u8(first);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}

/// The first frame of `bytes` if it is a whole unmasked text frame: its header, payload and
/// what follows it.
fn split_text_frame(bytes: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&first, after) = bytes.split_first()?;
    let (&second, after) = after.split_first()?;
    if first != FIN | OPCODE_TEXT || second & 0x80 != 0 {
        return None;
    }
    let (length, extended) = match second {
        126 => (
            u16::from_be_bytes(after.get(..2)?.try_into().ok()?) as usize,
            2,
        ),
        127 => (
            u64::from_be_bytes(after.get(..8)?.try_into().ok()?) as usize,
            8,
        ),
        n => (usize::from(n), 0),
    };
    let header: usize = 2 + extended;
    let end = header.checked_add(length)?;
    let frame = bytes.get(..end)?;
    Some((&frame[..header], &frame[header..], &bytes[end..]))
}

/// Text frames compressed one by one (a frame under `threshold`, a Pusher protocol event, or
/// one compression would not shrink, stays as it is); the same bytes when none changed.
fn deflate_frames(bytes: &Bytes, threshold: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    let mut changed = false;
    while let Some((header, payload, after)) = split_text_frame(rest) {
        rest = after;
        // `pusher:` and `pusher_internal:` events go as they are (frames put `event` first).
        let protocol = payload.starts_with(br#"{"event":"pusher"#);
        let compressed = (payload.len() >= threshold && !protocol)
            .then(|| deflate::compress(payload))
            .filter(|c| c.len() < payload.len());
        match compressed {
            Some(compressed) => {
                put_frame(&mut out, FIN | RSV1 | OPCODE_TEXT, &compressed);
                changed = true;
            }
            None => {
                out.put_slice(header);
                out.put_slice(payload);
            }
        }
    }
    match changed && rest.is_empty() {
        true => out.freeze(),
        false => bytes.clone(),
    }
}

impl AsRef<[u8]> for WireFrame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::Frame;

    /// tungstenite's own encoder, as the reference.
    fn reference(frame: Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[test]
    fn text_frames_match_tungstenite_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload = "x".repeat(len);
            let ours = WireFrame::text(&payload);
            let theirs = reference(Frame::message(
                payload.clone(),
                tungstenite::protocol::frame::coding::OpCode::Data(
                    tungstenite::protocol::frame::coding::Data::Text,
                ),
                true,
            ));
            assert_eq!(ours.as_ref(), &theirs[..], "length {len}");
        }
    }

    #[test]
    fn control_frames_match_tungstenite() {
        assert_eq!(
            WireFrame::ping().as_ref(),
            &reference(Frame::ping(Vec::new()))[..]
        );
        let close = tungstenite::protocol::CloseFrame {
            code: 4100u16.into(),
            reason: "over capacity".into(),
        };
        assert_eq!(
            WireFrame::close(4100, "over capacity").as_ref(),
            &reference(Frame::close(Some(close)))[..]
        );
    }

    #[test]
    fn joined_frames_keep_their_order_and_count() {
        let (a, b) = (WireFrame::text("a"), WireFrame::text("bb"));
        let joined = WireFrame::joined(&[a.clone(), b.clone()]);
        assert_eq!(joined.as_ref(), [a.as_ref(), b.as_ref()].concat());
        assert_eq!(joined.messages(), 2);
    }

    #[test]
    fn frames_from_another_node_are_checked_whole() {
        let frames = [1, 126, 70_000].map(|len| WireFrame::text(&"x".repeat(len)));
        let joined = WireFrame::joined(&frames);
        let back = WireFrame::from_wire(joined.as_ref()).unwrap();
        assert_eq!((back.messages(), back.as_ref()), (3, joined.as_ref()));
        assert_eq!(
            WireFrame::from_wire(&joined.as_ref()[..joined.len() - 1]),
            None,
            "cut short"
        );
        assert_eq!(
            WireFrame::from_wire(WireFrame::ping().as_ref()),
            None,
            "control frame"
        );
        assert_eq!(WireFrame::from_wire(b""), None);
    }

    #[test]
    fn a_compressible_frame_is_compressed_once_and_only_where_it_may_be() {
        let event = format!(
            r#"{{"event":"news","channel":"c","data":"{}"}}"#,
            "ab".repeat(400)
        );
        let frame = WireFrame::event(&event, Some(256));
        let copy = frame.clone();
        let compressed = frame.bytes_for(true);
        assert_eq!(compressed[0], FIN | RSV1 | OPCODE_TEXT);
        assert!(compressed.len() < frame.len() / 4);
        assert_eq!(
            copy.bytes_for(true).as_ptr(),
            compressed.as_ptr(),
            "made once for every clone"
        );
        assert_eq!(
            frame.bytes_for(false),
            frame.bytes(),
            "plain for the others"
        );
        // Under the threshold, a Pusher protocol event, compression off: as they are.
        let small = WireFrame::event(r#"{"event":"news","data":"x"}"#, Some(256));
        let internal = format!(
            r#"{{"event":"pusher_internal:x","data":"{}"}}"#,
            "a".repeat(900)
        );
        let internal = WireFrame::event(&internal, Some(256));
        let off = WireFrame::event(&event, None);
        for frame in [small, internal, off] {
            assert_eq!(frame.bytes_for(true), frame.bytes());
        }
        // Joined: each frame compressed on its own, in order.
        let joined = WireFrame::joined(&[
            WireFrame::event(&event, Some(256)),
            WireFrame::event(r#"{"event":"tiny"}"#, Some(256)),
        ]);
        let bytes = joined.bytes_for(true);
        assert_eq!(
            &bytes[..],
            [
                &compressed[..],
                &WireFrame::text(r#"{"event":"tiny"}"#).bytes()[..]
            ]
            .concat()
        );
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let frame = WireFrame::close(4009, &reason);
        // 2 header bytes, 2 code bytes, then at most 123 reason bytes (here 122: 61 whole chars).
        assert_eq!(frame.len(), 2 + 2 + 122);
        assert!(std::str::from_utf8(&frame.as_ref()[4..]).is_ok());
    }
}

#[cfg(test)]
mod review_tests;
