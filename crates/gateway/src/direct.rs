//! A chatroom's frames written straight to a member's socket by the room's fan-out: the
//! [`DirectWriter`] a plain WebSocket connection gives its session's outbox. The fan-out calls it
//! only while the connection's writer is idle with nothing queued; it frames each item's
//! shared bytes as a WebSocket message (a server's frames are not masked, so the header is all
//! there is to add) and writes them in one vectored write through the socket's [`Gate`], which
//! keeps them whole among the connection's own writes. The same goes for a PUBACK or a
//! delivery pushed while the writer is idle, framed by the connection's dialect on the spot,
//! and for the items the committer gathered for the connection while answering a batch (all
//! framed into one buffer and written at once).

use std::io::IoSlice;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tidings_dialects::WireOut;
use tidings_engine::{DirectWriter, Outbound, RoomItem, RoundWire};

use crate::gate::Gate;

/// The most bytes written directly at once: what a socket does not take is copied and held
/// for the connection (until its writer writes it), so a slow member costs at most this much
/// beyond its socket's own buffers. A larger round goes through the member's queue, where
/// the items are shared, not copied.
const MAX_DIRECT: usize = 64 * 1024;

/// A WebSocket frame's header as a server writes it: FIN, the opcode, the payload's length.
struct Header {
    bytes: [u8; 10],
    len: usize,
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;

impl Header {
    fn new(opcode: u8, payload: usize) -> Header {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode;
        let len = if payload < 126 {
            bytes[1] = payload as u8;
            2
        } else if let Ok(short) = u16::try_from(payload) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
            10
        };
        Header { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A connection's dialect's frame of an outbound item (`None` if it is not one frame).
pub(crate) type ItemFrame = Box<dyn Fn(&Outbound) -> Option<WireOut> + Send + Sync>;

/// A frame's WebSocket opcode and payload.
fn opcode_and_payload(frame: &WireOut) -> (u8, &[u8]) {
    match frame {
        WireOut::Binary(b) => (BINARY, b),
        WireOut::SharedBinary(b) => (BINARY, b),
        WireOut::Text(t) => (TEXT, t.as_bytes()),
        WireOut::SharedText(b) => (TEXT, b),
    }
}

/// Writes a connection's items through its socket's gate, each as the frame its dialect gives
/// for it (`frame`), with the WebSocket header added.
pub(crate) struct SocketWriter {
    gate: Arc<Gate>,
    frame: ItemFrame,
    /// The [`RoundWire`] slot of the connection's encoding, once known.
    slot: OnceLock<usize>,
}

impl SocketWriter {
    pub(crate) fn new(gate: Arc<Gate>, frame: ItemFrame) -> SocketWriter {
        SocketWriter {
            gate,
            frame,
            slot: OnceLock::new(),
        }
    }

    /// A room item's frame, if it is shared (the same bytes for every member).
    fn room_frame(&self, item: &Arc<RoomItem>) -> Option<WireOut> {
        (self.frame)(&Outbound::Room(item.clone()))
            .filter(|f| matches!(f, WireOut::SharedBinary(_) | WireOut::SharedText(_)))
    }

    /// Each item's frame: its header and its shared payload.
    fn frames<'a>(
        &self,
        items: impl Iterator<Item = &'a Arc<RoomItem>>,
    ) -> Option<Vec<(Header, Bytes)>> {
        items
            .map(|item| {
                // Anything but a shared frame (an item that failed to encode) goes the long
                // way, where the writer reports it.
                let (opcode, bytes) = match self.room_frame(item)? {
                    WireOut::SharedBinary(b) => (BINARY, b),
                    WireOut::SharedText(b) => (TEXT, b),
                    _ => return None,
                };
                Some((Header::new(opcode, bytes.len()), bytes))
            })
            .collect()
    }

    /// All of a round's items framed end to end, made once per encoding for the round.
    fn whole<'w>(
        &self,
        items: &mut dyn Iterator<Item = &Arc<RoomItem>>,
        whole: &'w RoundWire,
    ) -> Option<&'w Bytes> {
        let mut items = items.peekable();
        let slot = match self.slot.get() {
            Some(slot) => *slot,
            None => {
                let (opcode, _) = opcode_and_payload(&self.room_frame(items.peek()?)?);
                *self.slot.get_or_init(|| usize::from(opcode == BINARY))
            }
        };
        whole
            .slot(slot)?
            .get_or_init(|| {
                let frames = self.frames(items)?;
                let len = frames.iter().map(|(h, b)| h.len + b.len()).sum();
                let mut all = Vec::with_capacity(len);
                for (h, b) in &frames {
                    all.extend_from_slice(h.as_bytes());
                    all.extend_from_slice(b);
                }
                Some(Bytes::from(all))
            })
            .as_ref()
    }
}

impl DirectWriter for SocketWriter {
    fn write_room(
        &self,
        items: &mut dyn Iterator<Item = &Arc<RoomItem>>,
        whole: Option<&RoundWire>,
    ) -> bool {
        if let Some(whole) = whole {
            return match self.whole(items, whole) {
                Some(all) if all.len() <= MAX_DIRECT => self.gate.write_now(&[IoSlice::new(all)]),
                _ => false,
            };
        }
        let Some(frames) = self.frames(items) else {
            return false;
        };
        if frames.is_empty() {
            return true;
        }
        if frames.iter().map(|(h, b)| h.len + b.len()).sum::<usize>() > MAX_DIRECT {
            return false;
        }
        let bufs: Vec<IoSlice<'_>> = frames
            .iter()
            .flat_map(|(h, b)| [IoSlice::new(h.as_bytes()), IoSlice::new(b)])
            .collect();
        self.gate.write_now(&bufs)
    }

    fn write_item(&self, item: &Outbound) -> bool {
        // Framed into one buffer and written with a plain write, as gathered items are.
        self.write_items(&mut std::iter::once(item))
    }

    fn write_items(&self, items: &mut dyn Iterator<Item = &Outbound>) -> bool {
        let mut all = Vec::new();
        for item in items {
            let Some(frame) = self.small_frame(item) else {
                return false;
            };
            let (opcode, payload) = opcode_and_payload(&frame);
            let header = Header::new(opcode, payload.len());
            if all.len() + header.len + payload.len() > MAX_DIRECT {
                return false;
            }
            all.reserve(header.len + payload.len());
            all.extend_from_slice(header.as_bytes());
            all.extend_from_slice(payload);
        }
        all.is_empty() || self.gate.write_now(&[IoSlice::new(&all)])
    }
}

impl SocketWriter {
    /// The frame of an item small enough to frame on the spot (a room's item among them, which
    /// may be queued among gathered ones); anything else goes through the writer.
    fn small_frame(&self, item: &Outbound) -> Option<WireOut> {
        if item.is_small() || matches!(item, Outbound::Room(_)) {
            (self.frame)(item)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    /// The header is the one the WebSocket library writes for the same message, at each
    /// boundary of the length's three forms.
    #[test]
    fn headers_match_the_websocket_librarys_frames() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            for (opcode, data) in [(TEXT, Data::Text), (BINARY, Data::Binary)] {
                let payload = vec![b'a'; len];
                let mut expected = Vec::new();
                Frame::message(payload.clone(), OpCode::Data(data), true)
                    .format(&mut expected)
                    .unwrap();
                let mut ours = Header::new(opcode, len).as_bytes().to_vec();
                ours.extend_from_slice(&payload);
                assert_eq!(ours, expected, "length {len}, opcode {opcode}");
            }
        }
    }

    fn item(seq: u64) -> Arc<RoomItem> {
        let message = tidings_store::StoredMessage {
            seq,
            ..Default::default()
        };
        let priority = tidings_engine::Priority::Normal;
        Arc::new(RoomItem::new(
            "hall".into(),
            message,
            priority,
            0,
            String::new(),
        ))
    }

    /// A round too large to write at once goes through the queue: nothing of it is written or
    /// held; one within the bound is written whole.
    #[tokio::test]
    async fn only_rounds_within_the_bound_are_written_directly() {
        use tokio::io::AsyncReadExt;
        let (gate, mut client) = crate::gate::tests::pair().await;
        let frame: ItemFrame = Box::new(|item: &Outbound| {
            let Outbound::Room(item) = item else {
                return None;
            };
            let len = if item.seq() == 1 { MAX_DIRECT } else { 10 };
            Some(WireOut::SharedBinary(Bytes::from(vec![
                item.seq() as u8;
                len
            ])))
        });
        let rooms = SocketWriter::new(gate, frame);
        let (big, small) = ([item(1)], [item(2), item(3)]);
        assert!(!rooms.write_room(&mut big.iter(), None));
        assert!(!rooms.write_room(&mut big.iter(), Some(&RoundWire::default())));
        assert!(rooms.write_room(&mut small.iter(), Some(&RoundWire::default())));
        let mut got = [0u8; 24];
        client.read_exact(&mut got).await.unwrap();
        let frame = |seq: u8| [&[0x82, 10][..], &[seq; 10]].concat();
        assert_eq!(got.to_vec(), [frame(2), frame(3)].concat());
    }

    /// A connection's gathered items go out as consecutive frames of one write; a set over
    /// the bound, or holding an item that is not framed on the spot, is not written at all.
    #[tokio::test]
    async fn gathered_items_are_written_as_one_run_of_frames_within_the_bound() {
        use tokio::io::AsyncReadExt;
        let (gate, mut client) = crate::gate::tests::pair().await;
        let frame: ItemFrame = Box::new(|item: &Outbound| match item {
            Outbound::Pong => Some(WireOut::Binary(vec![7; 3])),
            Outbound::Status(_) => Some(WireOut::Binary(vec![9; MAX_DIRECT])),
            Outbound::ConnAck { .. } => Some(WireOut::Binary(vec![1])),
            _ => None,
        });
        let writer = SocketWriter::new(gate, frame);
        let status = Outbound::Status(Arc::new(tidings_engine::Delivered::for_viewer(
            "bob",
            Arc::new(tidings_store::StoredMessage::default()),
            0,
        )));
        let connack = Outbound::ConnAck {
            code: 0,
            text: String::new(),
        };
        assert!(!writer.write_items(&mut [Outbound::Pong, status].iter()));
        assert!(!writer.write_items(&mut [Outbound::Pong, connack].iter()));
        assert!(writer.write_items(&mut [Outbound::Pong, Outbound::Pong].iter()));
        let mut got = [0u8; 10];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x82, 3, 7, 7, 7, 0x82, 3, 7, 7, 7]);
    }
}
