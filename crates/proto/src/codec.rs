//! Frame codecs. A frame arrives as one WebSocket message: binary means protobuf, text means the
//! proto3 JSON mapping of the same schema. Decoding checks the size first, then the syntax, then
//! that exactly one body is set (the body *is* the frame kind).

use prost::Message as _;

use crate::v1::{Frame, frame::Body};

/// How a frame is encoded on the wire. A connection keeps the encoding of its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Protobuf bytes in a binary WebSocket message.
    Protobuf,
    /// Proto3 JSON text in a text WebSocket message.
    Json,
}

/// The frame kinds, numbered as the schema's body fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    Query = 5,
    QueryAck = 6,
    QueryCon = 7,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
}

impl FrameKind {
    /// The kind of a body.
    pub fn of(body: &Body) -> FrameKind {
        match body {
            Body::Connect(_) => FrameKind::Connect,
            Body::Connack(_) => FrameKind::ConnAck,
            Body::Publish(_) => FrameKind::Publish,
            Body::Puback(_) => FrameKind::PubAck,
            Body::Query(_) => FrameKind::Query,
            Body::Queryack(_) => FrameKind::QueryAck,
            Body::Querycon(_) => FrameKind::QueryCon,
            Body::Pingreq(_) => FrameKind::PingReq,
            Body::Pingresp(_) => FrameKind::PingResp,
            Body::Disconnect(_) => FrameKind::Disconnect,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Connect => "CONNECT",
            FrameKind::ConnAck => "CONNACK",
            FrameKind::Publish => "PUBLISH",
            FrameKind::PubAck => "PUBACK",
            FrameKind::Query => "QUERY",
            FrameKind::QueryAck => "QUERYACK",
            FrameKind::QueryCon => "QUERYCON",
            FrameKind::PingReq => "PINGREQ",
            FrameKind::PingResp => "PINGRESP",
            FrameKind::Disconnect => "DISCONNECT",
        }
    }
}

/// Why bytes could not be read as a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame has no known kind")]
    UnknownKind,
}

/// Decodes one frame. Frames longer than `max_len` bytes are refused before they are parsed.
pub fn decode(bytes: &[u8], encoding: Encoding, max_len: usize) -> Result<Frame, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    let frame = match encoding {
        Encoding::Protobuf => {
            Frame::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?
        }
        Encoding::Json => {
            let frame: Frame = serde_json::from_slice(bytes)
                .map_err(|e| DecodeError::Malformed(json_error_text(&e)))?;
            frame
        }
    };
    if frame.body.is_none() {
        return Err(DecodeError::UnknownKind);
    }
    Ok(frame)
}

/// Describes a JSON syntax error by position only: the decoder's own message can quote input.
fn json_error_text(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable input",
        Category::Syntax => "invalid JSON",
        Category::Data => "JSON does not match the frame schema",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Encodes one frame. Protobuf yields bytes for a binary WebSocket message; JSON yields UTF-8
/// text for a text message.
pub fn encode(frame: &Frame, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => frame.encode_to_vec(),
        // Serializing generated types to a Vec cannot fail: every field maps to JSON.
        Encoding::Json => serde_json::to_vec(frame).unwrap_or_default(),
    }
}

/// A frame with a body and default flags.
pub fn frame(body: Body) -> Frame {
    Frame {
        body: Some(body),
        qos: 0,
        dup: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    #[test]
    fn both_encodings_round_trip() {
        let f = Frame {
            body: Some(Body::Publish(v1::Publish {
                packet_id: 7,
                body: Some(v1::publish::Body::Send(v1::Send {
                    client_msg_id: "c1".into(),
                    conversation_type: 1,
                    target_id: "bob".into(),
                    msg_type: "text".into(),
                    content: r#"{"text":"hi"}"#.into(),
                    ..Default::default()
                })),
            })),
            qos: 1,
            dup: false,
        };
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let bytes = encode(&f, enc);
            assert_eq!(decode(&bytes, enc, 1 << 16).unwrap(), f);
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() {
        let err = decode(&[b'{'; 100], Encoding::Json, 10).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { len: 100, max: 10 });
    }

    #[test]
    fn a_frame_without_a_known_body_is_an_unknown_kind() {
        assert_eq!(
            decode(br#"{"subscribe":{}}"#, Encoding::Json, 1024),
            Err(DecodeError::UnknownKind)
        );
        // Field 8 (SUBSCRIBE in the lineage) as an empty length-delimited field.
        assert_eq!(
            decode(&[0x42, 0x00], Encoding::Protobuf, 1024),
            Err(DecodeError::UnknownKind)
        );
        assert_eq!(
            decode(&[], Encoding::Protobuf, 1024),
            Err(DecodeError::UnknownKind)
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            decode(b"{not json", Encoding::Json, 1024),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[0x1a, 0xff, 0xff], Encoding::Protobuf, 1024),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"publish":{"packetId":"x"}}"#, Encoding::Json, 1024),
            Err(DecodeError::Malformed(_))
        ));
    }
}
