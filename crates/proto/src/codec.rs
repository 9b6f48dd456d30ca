//! Frame codecs. A frame arrives as one WebSocket message: binary means protobuf, text means the
//! proto3 JSON mapping of the same schema. Decoding checks the size first, then the syntax, then
//! that exactly one body is set (the body *is* the frame kind), then that every enum field holds
//! a value the schema defines.
//!
//! A frame that decodes in one encoding can be written in both: that is why an unknown enum
//! value is refused at decode (protobuf would carry it, but its JSON mapping has no way to write
//! it). Encoding still returns a typed error rather than assuming so: no caller may send an
//! empty or partial frame in place of one that could not be written.

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

/// Why a frame could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The JSON mapping cannot express a value of the frame (an enum field holding a number the
    /// schema does not define).
    #[error("frame cannot be written as JSON: {0}")]
    Json(String),
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
    let Some(body) = &frame.body else {
        return Err(DecodeError::UnknownKind);
    };
    check_enums(body)?;
    Ok(frame)
}

/// Refuses enum fields that hold a number the schema does not define. Protobuf keeps such a
/// number as it came; the JSON decoder already refuses it, and the JSON encoder cannot write it.
/// `Send.priority` is the schema's only enum field (a test in `tests/schema_enums.rs` fails when
/// another appears, so that it is checked here too).
fn check_enums(body: &Body) -> Result<(), DecodeError> {
    if let Body::Publish(crate::v1::Publish {
        body: Some(crate::v1::publish::Body::Send(send)),
        ..
    }) = body
        && crate::v1::Priority::try_from(send.priority).is_err()
    {
        return Err(DecodeError::Malformed(format!(
            "priority {} is not a value of the enum Priority",
            send.priority
        )));
    }
    Ok(())
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
/// text for a text message ([`encode_json`] gives it as a `String`).
pub fn encode(frame: &Frame, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    match encoding {
        Encoding::Protobuf => Ok(encode_protobuf(frame)),
        Encoding::Json => encode_json(frame).map(String::into_bytes),
    }
}

/// Encodes one frame as protobuf, which can write every value a frame can hold.
pub fn encode_protobuf(frame: &Frame) -> Vec<u8> {
    frame.encode_to_vec()
}

/// Encodes one frame as proto3 JSON text.
pub fn encode_json(frame: &Frame) -> Result<String, EncodeError> {
    serde_json::to_string(frame).map_err(|e| EncodeError::Json(e.to_string()))
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
            let bytes = encode(&f, enc).unwrap();
            assert_eq!(decode(&bytes, enc, 1 << 16).unwrap(), f);
        }
    }

    fn publish_with_priority(priority: i32) -> Frame {
        frame(Body::Publish(v1::Publish {
            packet_id: 1,
            body: Some(v1::publish::Body::Send(v1::Send {
                client_msg_id: "c1".into(),
                conversation_type: 4,
                target_id: "room".into(),
                msg_type: "text".into(),
                content: r#"{"text":"hi"}"#.into(),
                priority,
                ..Default::default()
            })),
        }))
    }

    #[test]
    fn an_unknown_enum_value_is_refused_at_decode_in_both_encodings() {
        let bytes = publish_with_priority(64).encode_to_vec();
        assert!(
            matches!(
                decode(&bytes, Encoding::Protobuf, 1024),
                Err(DecodeError::Malformed(m)) if m.contains("priority 64")
            ),
            "protobuf carries the number, but the frame is refused"
        );
        let json = br#"{"publish":{"packetId":1,"send":{"clientMsgId":"c1","priority":64}}}"#;
        assert!(matches!(
            decode(json, Encoding::Json, 1024),
            Err(DecodeError::Malformed(_))
        ));
        // The values the schema defines decode in both encodings.
        for priority in [0, 1, 2] {
            let f = publish_with_priority(priority);
            for enc in [Encoding::Protobuf, Encoding::Json] {
                assert_eq!(decode(&encode(&f, enc).unwrap(), enc, 1024), Ok(f.clone()));
            }
        }
    }

    #[test]
    fn a_frame_json_cannot_write_is_an_encode_error_not_empty_bytes() {
        let f = publish_with_priority(64);
        assert!(matches!(
            encode(&f, Encoding::Json),
            Err(EncodeError::Json(m)) if m.contains("64")
        ));
        assert!(encode_json(&f).is_err());
        // Protobuf writes it as it is.
        assert!(!encode(&f, Encoding::Protobuf).unwrap().is_empty());
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
