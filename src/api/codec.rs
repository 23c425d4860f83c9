//! The protobuf codec of `sessionlog.v1`: tonic's prost codec, except that
//! a request that does not decode (malformed bytes, invalid UTF-8 in a
//! string, nesting past prost's recursion limit) is `INVALID_ARGUMENT`, the
//! client's fault, rather than tonic's default `INTERNAL`. OTLP's `Export`
//! has its own (`ExportCodec`), which leaves the request encoded for the
//! handler to count its records first.

use std::marker::PhantomData;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use prost::bytes::Buf;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use super::wire::EncodedExport;

/// The codec the generated code uses (see `build.rs`).
#[derive(Debug)]
pub(crate) struct Codec<T, U> {
    inner: ProstCodec<T, U>,
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
            _types: PhantomData,
        }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            inner: self.inner.decoder(),
        }
    }
}

/// Decodes messages; a decode failure is the sender's.
#[derive(Debug)]
pub(crate) struct RequestDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(buf).map_err(|status| {
            if status.code() != Code::Internal {
                return status;
            }
            Status::invalid_argument(format!(
                "the message is not valid protobuf: {}",
                decode_fault(status.message())
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// The codec of OTLP's `Export`: responses encoded as usual, requests kept
/// as their bytes (`EncodedExport`); the handler decodes them once it has
/// counted their records (`api::otlp`).
#[derive(Debug, Default)]
pub(crate) struct ExportCodec;

impl tonic::codec::Codec for ExportCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = EncodedExport;
    type Encoder = ProstEncoder<ExportLogsServiceResponse>;
    type Decoder = UndecodedExport;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<ExportLogsServiceResponse, ExportLogsServiceRequest>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        UndecodedExport
    }
}

/// Takes a request message's bytes as they are.
#[derive(Debug)]
pub(crate) struct UndecodedExport;

impl Decoder for UndecodedExport {
    type Item = EncodedExport;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<EncodedExport>, Status> {
        Ok(Some(EncodedExport {
            bytes: buf.copy_to_bytes(buf.remaining()),
        }))
    }
}

pub(super) use crate::edge::request::decode_fault;
