//! Messages the server handles in their encoded form. `AppendRequest`
//! arrives with its entries left encoded (see `convert::append_batch`), and
//! `FollowResponse`s go out already encoded. A follower's batch
//! is built from the stored bytes of its entries (a `StoredEntry` encodes as
//! the `LogEntry` it stands for), so delivering an entry costs a copy, not
//! a decode into structs and an encode back per follower. The server's
//! generated `Follow` streams this type (see `build.rs`); clients decode the
//! ordinary `pb::FollowResponse`, which has the same bytes.

use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, bytes as bytes_field, encode_key, encode_varint, encoded_len_varint,
    skip_field, string, uint64,
};

use crate::fanout::FollowBatch;
use crate::pb;

/// `FollowResponse.batch`, `LogBatch.entries` and `LogBatch.cursor`.
const BATCH_FIELD: u32 = 1;
const ENTRIES_FIELD: u32 = 1;
const CURSOR_FIELD: u32 = 2;

/// One encoded `sessionlog.v1.FollowResponse`.
#[derive(Clone, Default, PartialEq)]
pub struct EncodedFollowResponse {
    bytes: Bytes,
}

impl std::fmt::Debug for EncodedFollowResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedFollowResponse")
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl EncodedFollowResponse {
    /// A follower's `batch` event. A batch shared from a session's live
    /// window is encoded once, by the first follower that sends it, and
    /// the same bytes go to every other follower sending it.
    pub(crate) fn of_batch(batch: &FollowBatch) -> Self {
        Self {
            bytes: batch.encoded_once::<Self>(|entries, cursor| Self::batch(entries, cursor).bytes),
        }
    }

    /// A `batch` event of entries given as encoded `LogEntry`s.
    pub fn batch<E: AsRef<[u8]>>(entries: &[E], cursor: u64) -> Self {
        let entries_len: usize = entries
            .iter()
            .map(|entry| length_delimited_len(entry.as_ref().len()))
            .sum();
        let cursor_len = if cursor == 0 {
            0
        } else {
            1 + encoded_len_varint(cursor)
        };
        let batch_len = entries_len + cursor_len;
        let mut bytes = Vec::with_capacity(length_delimited_len(batch_len));
        encode_key(BATCH_FIELD, WireType::LengthDelimited, &mut bytes);
        encode_varint(batch_len as u64, &mut bytes);
        for entry in entries {
            let entry = entry.as_ref();
            encode_key(ENTRIES_FIELD, WireType::LengthDelimited, &mut bytes);
            encode_varint(entry.len() as u64, &mut bytes);
            bytes.extend_from_slice(entry);
        }
        if cursor != 0 {
            encode_key(CURSOR_FIELD, WireType::Varint, &mut bytes);
            encode_varint(cursor, &mut bytes);
        }
        Self {
            bytes: bytes.into(),
        }
    }
}

/// Any other event is small and rare: encoded the ordinary way.
impl From<pb::FollowResponse> for EncodedFollowResponse {
    fn from(response: pb::FollowResponse) -> Self {
        Self {
            bytes: response.encode_to_vec().into(),
        }
    }
}

/// A length-delimited field of `len` bytes with a one-byte key.
fn length_delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

impl Message for EncodedFollowResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    // The server only sends this type; anything decoded into it is kept
    // out of it rather than misread.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// An OTLP `ExportLogsServiceRequest` as it arrived, undecoded: its
/// records are counted on these bytes (`otlp::census`) before the decode
/// that would materialise every one of them. The server's `LogsService`
/// takes this type through `codec::ExportCodec` (see `build.rs`).
#[derive(Clone, Default, PartialEq)]
pub(crate) struct EncodedExport {
    pub(crate) bytes: Bytes,
}

impl std::fmt::Debug for EncodedExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedExport")
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// `sessionlog.v1.AppendRequest` as the server decodes it: each entry is
/// kept as the bytes of its `LogEntry`. The server's generated `Append` and
/// `AppendStream` take this type (see `build.rs`); clients send the
/// ordinary `pb::AppendRequest`, which has the same bytes.
#[derive(Clone, Default, PartialEq)]
pub struct WireAppendRequest {
    pub session_id: String,
    pub entries: Vec<Bytes>,
    pub expected_last_seq: Option<u64>,
    pub batch_id: String,
}

impl std::fmt::Debug for WireAppendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireAppendRequest")
            .field("session_id", &self.session_id)
            .field("entries", &self.entries.len())
            .field("expected_last_seq", &self.expected_last_seq)
            .field("batch_id", &self.batch_id)
            .finish()
    }
}

impl Message for WireAppendRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.session_id.is_empty() {
            string::encode(1, &self.session_id, buf);
        }
        for entry in &self.entries {
            encode_key(2, WireType::LengthDelimited, buf);
            encode_varint(entry.len() as u64, buf);
            buf.put_slice(entry);
        }
        if let Some(expected) = self.expected_last_seq {
            uint64::encode(3, &expected, buf);
        }
        if !self.batch_id.is_empty() {
            string::encode(4, &self.batch_id, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => string::merge(wire_type, &mut self.session_id, buf, ctx),
            2 => {
                let mut entry = Bytes::new();
                bytes_field::merge(wire_type, &mut entry, buf, ctx)?;
                self.entries.push(entry);
                Ok(())
            }
            3 => uint64::merge(wire_type, self.expected_last_seq.get_or_insert(0), buf, ctx),
            4 => string::merge(wire_type, &mut self.batch_id, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let session_id = if self.session_id.is_empty() {
            0
        } else {
            string::encoded_len(1, &self.session_id)
        };
        let entries: usize = self
            .entries
            .iter()
            .map(|entry| length_delimited_len(entry.len()))
            .sum();
        let expected = self
            .expected_last_seq
            .map_or(0, |expected| uint64::encoded_len(3, &expected));
        let batch_id = if self.batch_id.is_empty() {
            0
        } else {
            string::encoded_len(4, &self.batch_id)
        };
        session_id + entries + expected + batch_id
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::StoredEntry;

    fn stored(seq: u64, message: &str) -> Vec<u8> {
        StoredEntry {
            seq,
            message: message.to_owned(),
            fields: Some(prost_types::Struct {
                fields: [(
                    "k".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::NumberValue(1.5)),
                    },
                )]
                .into(),
            }),
            ..StoredEntry::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_batch_decodes_as_the_follow_response_it_stands_for() {
        for (entries, cursor) in [
            (vec![stored(1, "a"), stored(2, &"b".repeat(500))], 2),
            (vec![], 0),
            (vec![stored(300, "c")], 1 << 40),
        ] {
            let encoded = EncodedFollowResponse::batch(&entries, cursor).encode_to_vec();
            let decoded = pb::FollowResponse::decode(encoded.as_slice()).expect("decodes");
            let expected = pb::FollowResponse {
                event: Some(pb::follow_response::Event::Batch(pb::LogBatch {
                    entries: entries
                        .iter()
                        .map(|bytes| pb::LogEntry::decode(bytes.as_slice()).expect("entry"))
                        .collect(),
                    cursor,
                })),
            };
            assert_eq!(decoded, expected);
            assert_eq!(encoded, expected.encode_to_vec());
        }
    }

    #[test]
    fn an_append_request_reads_with_its_entries_as_sent() {
        for request in [
            pb::AppendRequest {
                session_id: "s1".to_owned(),
                entries: vec![
                    pb::LogEntry::decode(stored(0, "a").as_slice()).expect("entry"),
                    pb::LogEntry::default(),
                    pb::LogEntry::decode(stored(0, &"b".repeat(300)).as_slice()).expect("entry"),
                ],
                expected_last_seq: Some(0),
                batch_id: "b-1".to_owned(),
            },
            pb::AppendRequest::default(),
        ] {
            let encoded = request.encode_to_vec();
            let wire = WireAppendRequest::decode(encoded.as_slice()).expect("decodes");
            assert_eq!(wire.session_id, request.session_id);
            assert_eq!(wire.expected_last_seq, request.expected_last_seq);
            assert_eq!(wire.batch_id, request.batch_id);
            let entries: Vec<Vec<u8>> =
                request.entries.iter().map(Message::encode_to_vec).collect();
            assert_eq!(wire.entries, entries);
            assert_eq!(wire.encode_to_vec(), encoded);
            assert_eq!(wire.encoded_len(), encoded.len());
        }
        // An entry promising more bytes than there are does not decode.
        let mut truncated = Vec::new();
        encode_key(2, WireType::LengthDelimited, &mut truncated);
        encode_varint(100, &mut truncated);
        truncated.extend_from_slice(b"short");
        assert!(WireAppendRequest::decode(truncated.as_slice()).is_err());
    }

    #[test]
    fn other_events_keep_their_encoding() {
        let response = pb::FollowResponse {
            event: Some(pb::follow_response::Event::CaughtUp(pb::CaughtUp {
                cursor: 9,
            })),
        };
        let encoded = EncodedFollowResponse::from(response.clone());
        assert_eq!(encoded.encode_to_vec(), response.encode_to_vec());
    }
}
