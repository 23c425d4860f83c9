//! An entry on its way into a log, and how it is stored: as an encoded
//! `StoredEntry`, whose bytes are those of the `LogEntry` it stands for
//! (equal field numbers). An entry the edge vouched for keeps the bytes it
//! arrived in; only the server's fields go in front of them: the seq, and
//! the receive time when the entry has no timestamp. Any other entry is
//! encoded from its fields. Either way a reader decodes the same entry.

use std::time::SystemTime;

use prost::Message;
use prost::bytes::Bytes;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, message};

use super::schema::StoredEntry;

/// `StoredEntry.seq` and `StoredEntry.timestamp`.
const SEQ_FIELD: u32 = 1;
const TIMESTAMP_FIELD: u32 = 2;

/// An entry to append; the store assigns its seq.
#[derive(Debug, Clone, PartialEq)]
pub enum NewEntry {
    /// An entry as fields (decoded, or made by the server). A missing
    /// timestamp becomes the receive time.
    Decoded(StoredEntry),
    /// An encoded `LogEntry` that passed the edge's checks as it is and has
    /// no `seq` field (so the one put in front is the only one), and a
    /// `timestamp` field exactly when `has_timestamp`.
    Encoded { bytes: Bytes, has_timestamp: bool },
}

impl NewEntry {
    /// The stored bytes of this entry under `seq`.
    pub(crate) fn encode(self, seq: u64, now: SystemTime) -> Vec<u8> {
        match self {
            Self::Decoded(mut entry) => {
                entry.seq = seq;
                entry.timestamp.get_or_insert_with(|| now.into());
                entry.encode_to_vec()
            }
            Self::Encoded {
                bytes,
                has_timestamp,
            } => {
                let timestamp = (!has_timestamp).then(|| prost_types::Timestamp::from(now));
                let timestamp_len = timestamp.as_ref().map_or(0, |timestamp| {
                    message::encoded_len(TIMESTAMP_FIELD, timestamp)
                });
                let mut stored =
                    Vec::with_capacity(1 + encoded_len_varint(seq) + timestamp_len + bytes.len());
                encode_key(SEQ_FIELD, WireType::Varint, &mut stored);
                encode_varint(seq, &mut stored);
                if let Some(timestamp) = &timestamp {
                    message::encode(TIMESTAMP_FIELD, timestamp, &mut stored);
                }
                stored.extend_from_slice(&bytes);
                stored
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::schema::Level;

    fn entry() -> StoredEntry {
        StoredEntry {
            level: Level::Warn.into(),
            logger: "build".to_owned(),
            message: "slow test".to_owned(),
            trace_id: vec![7; 16],
            ..StoredEntry::default()
        }
    }

    #[test]
    fn kept_bytes_and_fields_store_the_same_entry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let sent_at = prost_types::Timestamp {
            seconds: 1_600_000_000,
            nanos: 5,
        };
        for timestamp in [None, Some(sent_at)] {
            let fields = StoredEntry {
                timestamp,
                ..entry()
            };
            let kept = NewEntry::Encoded {
                bytes: fields.encode_to_vec().into(),
                has_timestamp: timestamp.is_some(),
            };
            let from_kept = StoredEntry::decode(kept.encode(42, now).as_slice()).expect("decodes");
            let from_fields =
                StoredEntry::decode(NewEntry::Decoded(fields).encode(42, now).as_slice())
                    .expect("decodes");
            assert_eq!(from_kept, from_fields);
            assert_eq!(from_kept.seq, 42);
            assert_eq!(
                from_kept.timestamp,
                Some(timestamp.unwrap_or_else(|| now.into()))
            );
        }
    }
}
